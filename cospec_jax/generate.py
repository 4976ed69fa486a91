"""Decode your own prompts with any pair and any rule, and see who wrote each token.

  python -m cospec_jax.generate --target=runs/pipeline/target --draft=runs/pipeline/draft \\
      --arbiter=runs/pipeline/arbiter --rule=cospec --lam=0.5 --prompt='Start with 7. Add 5. Multiply by 3.'
  python -m cospec_jax.generate --target=/ckpt/Qwen2.5-7B-Instruct --draft=/ckpt/Qwen2.5-0.5B-Instruct \\
      --rule=topk --setting=k=2 --prompts_file=questions.jsonl --html=/tmp/trace.html

--target and --draft: Hugging Face checkpoint directories, or workdirs of the embedded pair's trainers (their hf/
export is read). The tokenizer is the target checkpoint's tokenizer.json, inside its chat template when it has one
(--nochat for plain text); without tokenizer.json, the embedded character tokenizer, and each prompt is framed as the
embedded task frames its questions. Prompts: --prompt (repeatable), or --prompts_file with one per line, or jsonl
with a "prompt" (or "question", "text") field per line.

Rules: target (the target alone), exact (SPD), sampling (speculative sampling at --temperature), cospec (the arbiter
of --arbiter at --lam; at --temperature > 0 over speculative sampling), and the relaxed rules topk, threshold and fly
with their settings (--setting=k=2). Each completion is printed with every token colored by its source
(cospec_jax/trace.py), followed by its row's statistics; --html writes the same as one page.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Sequence

import jax
import ml_collections
import numpy as np
from absl import app, flags

from cospec_jax import files, trace
from cospec_jax.decoding import (AutoregressiveDecoder, CoSpec, DecodeSettings, Exact, Greedy, RejectionSampling,
                                 Sampling, SpeculativeDecoder, make_rule)
from cospec_jax.decoding.cospec import ArbiterPolicy
from cospec_jax.models import CheckpointError, load_hf_checkpoint, read_hf_config
from cospec_jax.tasks.hf_tokenizer import HFTokenizer
from cospec_jax.tasks.tokenizer import CharTokenizer
from cospec_jax.train import arbiter as arbiter_lib
from cospec_jax.train import data as data_lib

RELAXED = ('topk', 'threshold', 'fly')
RULES = ('target', 'exact', 'sampling', 'cospec') + RELAXED

_TARGET = flags.DEFINE_string('target', None, 'Target: a Hugging Face checkpoint directory or a trainer workdir.')
_DRAFT = flags.DEFINE_string('draft', None, 'Draft: likewise (not needed for --rule=target).')
_ARBITER = flags.DEFINE_string('arbiter', '', 'Workdir of a trained arbiter (train_arbiter job); for --rule=cospec.')
_STEP = flags.DEFINE_integer('step', -1, 'Arbiter checkpoint step; -1: the last its training recorded.')
_RULE = flags.DEFINE_enum('rule', 'cospec', RULES, 'Acceptance rule.')
_LAM = flags.DEFINE_float('lam', 0.0, 'CoSpec\'s speed/accuracy knob.')
_SETTING = flags.DEFINE_multi_string('setting', [], 'A relaxed rule\'s setting, name=value (e.g. k=2).')
_GAMMA = flags.DEFINE_integer('gamma', 8, 'Draft tokens per target call.')
_TEMPERATURE = flags.DEFINE_float('temperature', 0.0, 'Sampling temperature; 0 decodes greedily.')
_MAX_NEW = flags.DEFINE_integer('max_new_tokens', 128, 'New tokens per prompt at most.')
_PROMPT = flags.DEFINE_multi_string('prompt', [], 'A prompt (repeatable).')
_PROMPTS_FILE = flags.DEFINE_string('prompts_file', '', 'One prompt per line, or .jsonl with a "prompt" field.')
_CHAT = flags.DEFINE_bool('chat', True, 'Put each prompt in the tokenizer\'s chat template when it has one.')
_HTML = flags.DEFINE_string('html', '', 'Also write the traces as one HTML page here.')
_DTYPE = flags.DEFINE_string('dtype', 'float32', 'Weights and activations: float32 or bfloat16.')
_BATCH = flags.DEFINE_integer('batch_size', 8, 'Prompts per compiled call.')
_SEED = flags.DEFINE_integer('seed', 0, 'Sampling seed.')
_HIDDEN = flags.DEFINE_integer('policy_hidden', 64, 'The arbiter\'s MLP width, as it was trained.')
_PROJECTION = flags.DEFINE_integer('policy_projection', 16, 'The arbiter\'s hidden-state projection, as trained.')


def checkpoint_dir(path: str, flag: str) -> str:
  """`path` itself when it holds config.json, else its hf/ export (a trainer's workdir); a clear error otherwise."""
  for candidate in (path, os.path.join(path, 'hf')):
    if os.path.isfile(os.path.join(candidate, 'config.json')):
      return candidate
  raise CheckpointError(f'--{flag}={path!r} holds no config.json, nor does {os.path.join(path, "hf")!r}: give a '
                        'Hugging Face checkpoint directory or the workdir of a trained model.')


def read_prompts(prompts: Sequence[str], path: str) -> list[str]:
  """--prompt values, then --prompts_file's (one per line, or jsonl with a prompt/question/text field)."""
  out = list(prompts)
  if path:
    with open(path) as f:
      lines = [line.rstrip('\n') for line in f if line.strip()]
    if path.endswith('.jsonl'):
      for i, line in enumerate(lines):
        record = json.loads(line)
        text = next((record[k] for k in ('prompt', 'question', 'text') if k in record), None)
        if not isinstance(text, str):
          raise ValueError(f'{path} line {i + 1} has no "prompt", "question" or "text" string field: {line[:80]!r}')
        out.append(text)
    else:
      out += lines
  if not out:
    raise ValueError('No prompt given: pass --prompt=... (repeatable) or --prompts_file=FILE.')
  return out


def tokenizer_and_encoder(target_dir: str, vocab_size: int, chat: bool):
  """(tokenizer, text -> prompt ids) for the target checkpoint."""
  if os.path.exists(os.path.join(target_dir, 'tokenizer.json')):
    tokenizer = HFTokenizer(target_dir)

    def encode(text: str) -> list[int]:
      if chat and tokenizer.chat_template:
        return tokenizer.encode(tokenizer.apply_chat_template([{'role': 'user', 'content': text}]))
      return ([] if tokenizer.bos_id is None else [tokenizer.bos_id]) + tokenizer.encode(text)
    return tokenizer, encode
  tokenizer = CharTokenizer()
  if vocab_size != tokenizer.vocab_size:
    raise CheckpointError(f'{target_dir} has no tokenizer.json and its vocabulary ({vocab_size}) is not the embedded '
                          f'character tokenizer\'s ({tokenizer.vocab_size}); add the checkpoint\'s tokenizer.json.')
  return tokenizer, lambda text: data_lib.prompt_ids(tokenizer, text)  # As the embedded task frames a question.


def load_arbiter(workdir: str, step: int, target_dir: str, draft_dir: str, hidden: int, projection: int):
  """(policy, params) of the arbiter in `workdir`, checked against the pair it is given."""
  try:
    with open(os.path.join(workdir, arbiter_lib.DONE_FILE)) as f:
      done = json.load(f)
  except (OSError, ValueError) as e:
    raise FileNotFoundError(f'--arbiter={workdir!r} holds no finished arbiter ({arbiter_lib.DONE_FILE} is missing or '
                            'unreadable): train one with the train_arbiter job (or the pipeline) first.') from e
  hidden, projection = (done.get('policy', {}).get(k, v) for k, v in (('hidden', hidden), ('projection', projection)))
  # What restoring reads: the pair (the policy's input widths), the policy's shape, the optimiser state's structure.
  config = ml_collections.ConfigDict(dict(
      seed=0, pair=dict(target_checkpoint=target_dir, draft_checkpoint=draft_dir),
      policy=dict(hidden=hidden, projection=projection), rl=dict(grad_clip=1.0, learning_rate=1e-4)))
  recorded, given = done.get('pair'), arbiter_lib.pair_fingerprints(config)
  if recorded is None:
    print(f'note: {workdir} was trained by a version that did not record its pair; it cannot be checked against '
          'this one.', file=sys.stderr)
  elif recorded != given:
    which = [k for k in given if recorded.get(k) != given[k]]
    raise ValueError(f'The arbiter in {workdir} was trained for another pair: the {" and ".join(which)} checkpoint '
                     f'differs from the one it recorded. Give --target/--draft the pair it was trained on, or train '
                     'an arbiter for this pair.')
  step = done['steps'][-1] if step < 0 else step
  if step not in done['steps']:
    raise ValueError(f'--step={step}: the arbiter in {workdir} kept steps {done["steps"]}.')
  try:
    state = arbiter_lib.restore_state(config, workdir, step)
  except Exception as e:  # orbax names the mismatching leaf; say what it means here.
    widths = ', '.join(f'{name} width {read_hf_config(d).d_model}' for name, d in (('target', target_dir),
                                                                                  ('draft', draft_dir)))
    raise ValueError(f'The arbiter in {workdir} (step {step}) does not fit this pair ({widths}) with policy '
                     f'hidden={hidden}, projection={projection}: was it trained for another pair, or with other '
                     f'--policy_* sizes? ({type(e).__name__}: {str(e)[:200]})') from e
  return ArbiterPolicy(hidden, projection), state.params


def _setting(text: str) -> tuple[str, float]:
  name, sep, value = text.partition('=')
  if not sep:
    raise ValueError(f'--setting={text!r} is not name=value (e.g. --setting=k=2).')
  number = float(value)
  return name, int(number) if number.is_integer() and name == 'k' else number


def build_rule(name: str, settings: Sequence[str], temperature: float, policy=None):
  base = RejectionSampling(Sampling(temperature)) if temperature > 0 else Exact()
  if name == 'exact':
    return Exact()
  if name == 'sampling':
    if temperature <= 0:
      raise ValueError('--rule=sampling needs --temperature > 0 (at 0 it is --rule=exact).')
    return base
  if name == 'cospec':
    return CoSpec(base, policy)
  return make_rule(name, **dict(_setting(s) for s in settings))


def run(target_path: str, draft_path: str, rule: str, prompts: Sequence[str], *, arbiter: str = '', step: int = -1,
        lam: float = 0.0, settings: Sequence[str] = (), gamma: int = 8, temperature: float = 0.0,
        max_new_tokens: int = 128, chat: bool = True, html: str = '', dtype: str = 'float32', batch_size: int = 8,
        seed: int = 0, policy_hidden: int = 64, policy_projection: int = 16) -> list[dict]:
  """Decodes `prompts`; prints each traced completion with its statistics; returns them (see module docstring)."""
  target_dir = checkpoint_dir(target_path, 'target')
  target = load_hf_checkpoint(target_dir, dtype)
  tokenizer, encode = tokenizer_and_encoder(target_dir, target[0].vocab_size, chat)
  ids = [encode(p) for p in prompts]
  limit = target[0].max_position_embeddings
  for i, p in enumerate(ids):
    if len(p) + max_new_tokens + gamma + 1 > limit:
      raise ValueError(f'Prompt {i + 1} is {len(p)} tokens; with --max_new_tokens={max_new_tokens} and one block of '
                       f'{gamma + 1} it passes the target\'s {limit} positions (max_position_embeddings). Shorten it '
                       'or lower --max_new_tokens.')
  decode_settings = DecodeSettings.for_tokenizer(tokenizer, max_new_tokens)
  rng = jax.random.PRNGKey(seed)
  if rule == 'target':
    decoder = AutoregressiveDecoder(target[0], Sampling(temperature) if temperature > 0 else Greedy(),
                                    settings=decode_settings)
    chunks = decoder.generate_batches(target[1], ids, batch_size, rng)
  else:
    if not draft_path:
      raise ValueError(f'--rule={rule} needs --draft.')
    draft_dir = checkpoint_dir(draft_path, 'draft')
    draft = load_hf_checkpoint(draft_dir, dtype)
    rule_params, policy = None, None
    if rule == 'cospec':
      if not arbiter:
        raise ValueError('--rule=cospec needs --arbiter=<workdir of a trained arbiter>.')
      policy, params = load_arbiter(arbiter, step, target_dir, draft_dir, policy_hidden, policy_projection)
      rule_params = {'policy': params, 'lam': float(lam)}
    decoder = SpeculativeDecoder(target[0], draft[0], build_rule(rule, settings, temperature, policy), gamma,
                                 decode_settings)
    chunks = decoder.generate_in_batches(target[1], draft[1], ids, batch_size, rng, rule_params)
  print(f'legend: {trace.legend_ansi()}')
  out = []
  for start, (gen, n) in zip(range(0, len(ids), batch_size), chunks):
    st = jax.tree_util.tree_map(np.asarray, gen.stats)
    for b, (tokens, sources) in enumerate(zip(gen.completions()[:n], gen.completion_sources()[:n])):
      marked = trace.pieces(tokenizer, tokens, sources)
      calls = int(st.target_calls_B[b])
      row = {'prompt': prompts[start + b], 'completion': tokenizer.decode(list(tokens)), 'marked': marked,
             'counts': trace.count_sources(marked), 'target_calls': calls, 'generated': int(st.generated_B[b]),
             'tokens_per_target_call': int(st.generated_B[b]) / max(calls, 1),
             'mismatches': int(st.mismatches_B[b]), 'kept_at_mismatch': int(st.kept_at_mismatch_B[b])}
      out.append(row)
      print(f'\n--- prompt {start + b + 1}: {row["prompt"]}\n{trace.ansi(marked)}\n'
            f'[{rule}] target calls {calls}, tokens {row["generated"]}, tokens per target call '
            f'{row["tokens_per_target_call"]:.2f}, mismatches {row["mismatches"]}, kept by the arbiter '
            f'{row["kept_at_mismatch"]}')
  if html:
    files.write_atomically(html, trace.completions_page(out, f'{rule} on {len(out)} prompts'))
    print(f'\nwritten: {html}')
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments {argv[1:]}; prompts go in --prompt=... or --prompts_file=...')
  try:
    run(_TARGET.value, _DRAFT.value, _RULE.value, read_prompts(_PROMPT.value, _PROMPTS_FILE.value),
        arbiter=_ARBITER.value, step=_STEP.value, lam=_LAM.value, settings=_SETTING.value, gamma=_GAMMA.value,
        temperature=_TEMPERATURE.value, max_new_tokens=_MAX_NEW.value, chat=_CHAT.value, html=_HTML.value,
        dtype=_DTYPE.value, batch_size=_BATCH.value, seed=_SEED.value, policy_hidden=_HIDDEN.value,
        policy_projection=_PROJECTION.value)
  except (ValueError, FileNotFoundError, CheckpointError) as e:
    raise app.UsageError(str(e)) from e


if __name__ == '__main__':
  flags.mark_flag_as_required('target')
  app.run(main)
