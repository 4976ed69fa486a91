"""Would keeping the draft's token at a mismatch ever help? The counterfactual behind CoSpec, measured.

For each test problem: decode with the target greedily (which greedy speculative decoding reproduces token for
token); find the mismatches, the positions of that trajectory where the draft's greedy choice differs from the
target's; at each one, force the draft's token and let the target continue greedily. Report
  (a) how often draft and target disagree (per generated token, and per problem),
  (b) of the problems the target gets wrong, the share that forcing the draft at one mismatch turns right,
  (c) of the problems the target gets right, the share that forcing the draft at one mismatch turns wrong.
(b) is an upper bound of what an arbiter choosing once per problem could gain; (c) is what a careless one could lose.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cospec_jax.decoding import AutoregressiveDecoder, DecodeSettings
from cospec_jax.models import ModelConfig, transformer
from cospec_jax.tasks.tokenizer import Tokenizer
from cospec_jax.train import counterfactual


def _decode_all(model: ModelConfig, params, prompts: Sequence[Sequence[int]], tokenizer: Tokenizer,
                max_new_tokens: int, batch_size: int) -> list[list[int]]:
  decoder = AutoregressiveDecoder(model, settings=DecodeSettings.for_tokenizer(tokenizer, max_new_tokens))
  return decoder.generate_in_batches(params, prompts, batch_size)


def _draft_choices(model: ModelConfig, params, sequences: Sequence[Sequence[int]], pad_id: int,
                   batch_size: int) -> list[np.ndarray]:
  """The draft's greedy next token after every prefix of each sequence (full forward passes, batched)."""
  apply = jax.jit(lambda p, t: jnp.argmax(
      transformer.apply(model, p, t, jnp.broadcast_to(jnp.arange(t.shape[1]), t.shape))[0], -1))
  length = max(len(s) for s in sequences)
  out = []
  for start in range(0, len(sequences), batch_size):
    chunk = sequences[start:start + batch_size]
    tokens = np.full((batch_size, length), pad_id, np.int32)
    for b, seq in enumerate(chunk):
      tokens[b, :len(seq)] = seq
    choices = np.asarray(apply(params, jnp.asarray(tokens)))
    out += [choices[b, :len(seq)] for b, seq in enumerate(chunk)]
  return out


def run(target: tuple, draft: tuple, task, problems: Sequence[dict], max_new_tokens: int = 64,
        batch_size: int = 64) -> dict:
  """Runs the counterfactual on `problems` of `task` (tasks/task.py); returns counts and rates.

  `target` and `draft` are (ModelConfig, params) pairs sharing the task's tokenizer.
  """
  (tc, tp), (dc, dp), tokenizer = target, draft, task.tokenizer
  prompts = [task.prompt(p) for p in problems]
  completions = _decode_all(tc, tp, prompts, tokenizer, max_new_tokens, batch_size)
  target_right = task.score(completions, problems)
  # The draft's choice at each generated position, given the target's prefix.
  draft_next = _draft_choices(dc, dp, [p + c for p, c in zip(prompts, completions)], tokenizer.pad_id, batch_size)
  forks = []  # (problem, position in completion, forced answer head)
  for i, (prompt, completion) in enumerate(zip(prompts, completions)):
    for j, token in enumerate(completion):
      choice = int(draft_next[i][len(prompt) + j - 1])
      if choice != token:
        forks.append((i, j, completion[:j] + [choice]))
  n_tokens = sum(len(c) for c in completions)
  forked = counterfactual.continue_forks(target, tokenizer, [prompts[i] for i, _, _ in forks],
                                         [head for _, _, head in forks], max_new_tokens, batch_size)
  fork_right = task.score(forked, [problems[i] for i, _, _ in forks])
  by_problem = {}
  for (i, _, _), right in zip(forks, fork_right):
    by_problem.setdefault(i, []).append(right)
  wrong = [i for i, r in enumerate(target_right) if not r]
  right = [i for i, r in enumerate(target_right) if r]
  fixed = [i for i in wrong if any(by_problem.get(i, []))]
  broken = [i for i in right if not all(by_problem.get(i, [True]))]
  forks_on_wrong = [r for (i, _, _), r in zip(forks, fork_right) if not target_right[i]]
  forks_on_right = [r for (i, _, _), r in zip(forks, fork_right) if target_right[i]]
  return {
      'problems': len(problems),
      'target_correct': len(right),
      'generated_tokens': n_tokens,
      'mismatches': len(forks),
      'problems_with_mismatch': len(by_problem),
      'a_disagreement_per_token': len(forks) / max(n_tokens, 1),
      'target_wrong': len(wrong),
      'b_fixed': len(fixed),
      'b_share': len(fixed) / max(len(wrong), 1),
      'b_forks_fixing': int(np.sum(forks_on_wrong)),
      'b_forks_on_wrong': len(forks_on_wrong),
      'c_broken': len(broken),
      'c_share': len(broken) / max(len(right), 1),
      'c_forks_breaking': int(len(forks_on_right) - np.sum(forks_on_right)),
      'c_forks_on_right': len(forks_on_right),
  }


def format_report(r: dict) -> str:
  """The three figures with their counts, as a small table."""
  rows = [
      ('target-only accuracy', f'{r["target_correct"]}/{r["problems"]}', r['target_correct'] / max(r['problems'], 1)),
      ('(a) disagreement per generated token', f'{r["mismatches"]}/{r["generated_tokens"]}',
       r['a_disagreement_per_token']),
      ('(a) problems with a mismatch', f'{r["problems_with_mismatch"]}/{r["problems"]}',
       r['problems_with_mismatch'] / max(r['problems'], 1)),
      ('(b) target-wrong problems fixed by one forced draft token', f'{r["b_fixed"]}/{r["target_wrong"]}',
       r['b_share']),
      ('    per mismatch on those problems', f'{r["b_forks_fixing"]}/{r["b_forks_on_wrong"]}',
       r['b_forks_fixing'] / max(r['b_forks_on_wrong'], 1)),
      ('(c) target-right problems broken by one forced draft token', f'{r["c_broken"]}/{r["target_correct"]}',
       r['c_share']),
      ('    per mismatch on those problems', f'{r["c_forks_breaking"]}/{r["c_forks_on_right"]}',
       r['c_forks_breaking'] / max(r['c_forks_on_right'], 1)),
  ]
  width = max(len(name) for name, _, _ in rows)
  lines = [f'{"":{width}}  {"count":>11}  {"share":>6}']
  lines += [f'{name:{width}}  {count:>11}  {share:>6.1%}' for name, count, share in rows]
  return '\n'.join(lines)
