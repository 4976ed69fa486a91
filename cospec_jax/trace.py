"""The collaboration trace: who wrote each token of a CoSpec answer.

Every token the speculative loop commits is marked (`Generation.sources_BxT`) as a draft token accepted on agreement,
a draft token kept at a mismatch by the arbiter, the target's correction, or the bonus token after a fully accepted
block. `run` finds test problems where CoSpec's answer is right and target-only decoding's is wrong, decodes them with
both, and writes the marked text as colored terminal output (printed) and as one self-contained HTML page.
"""

from __future__ import annotations

import html
import itertools
import os
from typing import Sequence

import jax
import ml_collections
import numpy as np

from cospec_jax import files, sharding
from cospec_jax.decoding import AutoregressiveDecoder, CoSpec, DecodeSettings, Exact, SpeculativeDecoder
from cospec_jax.decoding import state as state_lib
from cospec_jax.decoding.cospec import ArbiterPolicy
from cospec_jax.tasks import answers
from cospec_jax.train import arbiter

# source -> (ANSI style, HTML background, legend)
STYLES = {
    state_lib.AGREED: ('\033[32m', '#c8f0c8', 'draft token, accepted (target agreed)'),
    state_lib.KEPT: ('\033[1;97;45m', '#f3a6f3', 'draft token, kept at a mismatch by the arbiter'),
    state_lib.CORRECTION: ('\033[1;34m', '#b8d4ff', 'target token, correcting the draft'),
    state_lib.BONUS: ('\033[36m', '#c9f1f1', 'target bonus token (after a fully accepted block)'),
    state_lib.TARGET: ('', '#eeeeee', 'target token (one-model decoding)'),
}
RESET = '\033[0m'


def pieces(tokenizer, tokens: Sequence[int], sources: Sequence[int]) -> list[tuple[str, int]]:
  """(text, source) per token, EOS dropped."""
  return [(tokenizer.decode([int(t)]), int(s)) for t, s in zip(tokens, sources) if int(t) != tokenizer.eos_id]


def count_sources(marked: Sequence[tuple[str, int]]) -> dict[str, int]:
  """How many tokens came from each source."""
  sources = [s for _, s in marked]
  return {name: sources.count(s) for s, name in ((state_lib.AGREED, 'agreed'), (state_lib.KEPT, 'kept by the arbiter'),
                                                 (state_lib.CORRECTION, 'corrections'), (state_lib.BONUS, 'bonus'))}


def ansi(marked: Sequence[tuple[str, int]]) -> str:
  """The text with each token in its source's terminal color."""
  out = []
  for source, run in itertools.groupby(marked, key=lambda piece: piece[1]):
    text, style = ''.join(t for t, _ in run), STYLES[source][0]
    # Newlines stay uncolored, so a background never bleeds across the line.
    out.append('\n'.join(f'{style}{part}{RESET}' if style and part else part for part in text.split('\n')))
  return ''.join(out)


def legend_ansi() -> str:
  return '  '.join(f'{STYLES[s][0]}{name}{RESET}' for s, name in
                   ((state_lib.AGREED, 'agreed'), (state_lib.KEPT, 'draft kept at mismatch'),
                    (state_lib.CORRECTION, 'target correction'), (state_lib.BONUS, 'bonus')))


def _html_text(marked: Sequence[tuple[str, int]]) -> str:
  return ''.join(f'<span class="s{source}" title="{html.escape(STYLES[source][2])}">{html.escape(text)}</span>'
                 for text, source in marked)


def _page(title: str, sections: Sequence[str]) -> str:
  """One self-contained page (inline CSS, no scripts): a title, the legend, the sections."""
  css = '\n'.join(f'.s{s} {{ background: {bg}; }}' for s, (_, bg, _) in STYLES.items())
  legend = ' '.join(f'<span class="s{s}">{html.escape(name)}</span>' for s, (_, _, name) in STYLES.items()
                    if s != state_lib.TARGET)
  return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>\n'
          'body { font-family: sans-serif; max-width: 60em; margin: 2em auto; }\n'
          'pre { font-size: 1.1em; white-space: pre-wrap; line-height: 1.6; }\n'
          'pre span { border-radius: 2px; }\n.q { font-style: italic; }\n.c { color: #555; }\n'
          f'{css}\n</style></head><body><h1>{html.escape(title)}</h1><p>{legend}</p>\n' + '\n'.join(sections) +
          '\n</body></html>\n')


def completions_page(rows: Sequence[dict], title: str) -> str:
  """The page of `python -m cospec_jax.generate`: each prompt, its marked completion and its statistics."""
  sections = []
  for i, row in enumerate(rows):
    stats = (f'target calls {row["target_calls"]}, tokens {row["generated"]}, tokens per target call '
             f'{row["tokens_per_target_call"]:.2f}, mismatches {row["mismatches"]}, kept by the arbiter '
             f'{row["kept_at_mismatch"]}')
    sections.append(f'<section><h2>Prompt {i + 1}</h2><p class="q">{html.escape(row["prompt"])}</p>'
                    f'<pre>{_html_text(row["marked"])}</pre><p class="c">{html.escape(stats)}</p></section>')
  return _page(title, sections)


def html_page(examples: Sequence[dict], title: str) -> str:
  """The trace's page: every example, CoSpec's answer marked beside the target's."""
  body = []
  for ex in examples:
    counts = ', '.join(f'{n} {name}' for name, n in ex['counts'].items())
    body.append(
        f'<section><h2>Test problem {ex["index"]}</h2><p class="q">{html.escape(ex["question"])}</p>'
        f'<p>Reference answer: <b>{html.escape(ex["reference"])}</b></p>'
        f'<h3>CoSpec: {html.escape(ex["cospec_answer"])} ({"right" if ex["cospec_right"] else "wrong"})</h3>'
        f'<pre>{_html_text(ex["cospec"])}</pre><p class="c">{html.escape(counts)}</p>'
        f'<h3>Target alone: {html.escape(ex["target_answer"])} ({"right" if ex["target_right"] else "wrong"})</h3>'
        f'<pre>{_html_text(ex["target"])}</pre></section>')
  return _page(title, body)


def _decode_all(decoder, prompts: Sequence[Sequence[int]], batch_size: int, params: tuple, rule_params=None):
  """(completions, sources) of every prompt; `params` is (model,) for one-model decoding or (target, draft)."""
  buckets = (max(len(p) for p in prompts),)
  if isinstance(decoder, AutoregressiveDecoder):
    chunks = decoder.generate_batches(params[0], prompts, batch_size, jax.random.PRNGKey(0), buckets)
  else:
    chunks = decoder.generate_in_batches(*params, prompts, batch_size, jax.random.PRNGKey(0), rule_params,
                                         buckets=buckets)
  completions, sources = [], []
  for gen, n in chunks:
    completions += gen.completions()[:n]
    sources += gen.completion_sources()[:n]
  return completions, sources


def _question(problem: dict) -> str:
  """What the problem asks, for the page: a math question, or a code task's description."""
  return problem.get('question') or problem.get('text') or problem.get('prompt', '')


def _final(tokenizer, completion, right: bool) -> str:
  """The final answer of a math completion, or 'passes'/'fails its tests' for code."""
  answer = answers.extract_answer(tokenizer.decode(list(completion)))
  return str(answer) if answer is not None else ('passes its tests' if right else 'no answer / fails its tests')


def run(config: ml_collections.ConfigDict, workdir: str, pair=None) -> list[dict]:
  """Writes <workdir>/trace.html and prints up to config.trace.examples traces (see module docstring), or the
  problems config.trace.problems names. `pair`: (target, draft) already loaded (`arbiter.load_pair`)."""
  os.makedirs(workdir, exist_ok=True)
  t = config.trace
  mesh = sharding.mesh_from_config(config)
  target, draft = pair or arbiter.load_pair(config, mesh)
  task = arbiter.load_task(config, config.pair.target_workdir)
  tokenizer, problems = task.tokenizer, task.problems('test')[:t.search]
  prompts = [task.prompt(p) for p in problems]
  settings = DecodeSettings.for_tokenizer(tokenizer, config.rl.max_new_tokens)
  policy = ArbiterPolicy(config.policy.hidden, config.policy.projection)
  step = t.get('step', -1)
  step = arbiter.finished_steps(config, config.arbiter_workdir)[-1] if step < 0 else step
  policy_params = arbiter.restore_state(config, config.arbiter_workdir, step).params
  cospec = SpeculativeDecoder(target[0], draft[0], CoSpec(Exact(), policy), config.rl.gamma, settings, mesh=mesh)
  cospec_out, cospec_src = _decode_all(cospec, prompts, t.batch_size, (target[1], draft[1]),
                                       {'policy': policy_params, 'lam': float(t.lam)})
  target_out, target_src = _decode_all(AutoregressiveDecoder(target[0], settings=settings, mesh=mesh), prompts,
                                       t.batch_size,
                                       (target[1],))
  cospec_right, target_right = task.score(cospec_out, problems), task.score(target_out, problems)
  chosen = np.flatnonzero(cospec_right & ~target_right)[:t.examples]
  if t.problems:  # Asked for by index: trace those, whoever was right.
    if max(t.problems) >= len(problems) or min(t.problems) < 0:
      raise ValueError(f'config.trace.problems={tuple(t.problems)} names a problem outside the {len(problems)} '
                       'searched; raise config.trace.search or pick indices below it.')
    chosen = np.asarray(t.problems, int)
  print(f'trace: CoSpec (step {step}, lam={t.lam:g}) right and target-only wrong on {int(np.sum(cospec_right & ~target_right))} '
        f'of {len(problems)} test problems; the reverse on {int(np.sum(target_right & ~cospec_right))}.')
  print(f'legend: {legend_ansi()}')
  examples = []
  for i in chosen:
    marked = pieces(tokenizer, cospec_out[i], cospec_src[i])
    ex = {'index': int(i), 'question': _question(problems[i]), 'reference': str(problems[i].get('answer', '')),
          'cospec': marked, 'target': pieces(tokenizer, target_out[i], target_src[i]),
          'cospec_answer': _final(tokenizer, cospec_out[i], cospec_right[i]),
          'target_answer': _final(tokenizer, target_out[i], target_right[i]),
          'cospec_right': bool(cospec_right[i]), 'target_right': bool(target_right[i]),
          'counts': count_sources(marked)}
    examples.append(ex)
    print(f'\n--- test problem {i}: {ex["question"]}  (reference {ex["reference"]})')
    print(f'CoSpec -> {ex["cospec_answer"]}:\n{ansi(marked)}')
    print(f'target alone -> {ex["target_answer"]}:\n{"".join(text for text, _ in ex["target"])}')
  path = os.path.join(workdir, 'trace.html')
  files.write_atomically(path, html_page(examples, f'CoSpec collaboration trace (lam={t.lam:g})'))
  print(f'\ntrace: {len(examples)} examples written to {path}')
  return examples
