"""Every choice of the comparison is made on validation, by one rule for all methods; test is read once, afterwards.

- `grid`: every combination of a method's settings (`config.table` lists each method's values).
- `choose`: the one rule that picks each method's operating point from its validation sweep: the most accurate point
  whose tokens per target call are at least plain SPD's on validation (ties: more tokens per call, then the earlier
  point); when none reaches SPD's, the point with the most tokens per call.
- `choose_step`: the REINFORCE checkpoint, the most accurate on validation (ties: more tokens per call, then the
  earlier step), never simply the last.
- `split_overlap`: how many problems two splits share, by text and by canonical content, recorded with the results.
"""

from __future__ import annotations

import itertools
from typing import Sequence

from cospec_jax.tasks import arithmetic

RULE = ('the most accurate validation point whose tokens per target call are at least plain SPD\'s on validation '
        '(ties: more tokens per call, then the earlier point); if none reaches SPD\'s, the point with the most '
        'tokens per call')


def grid(values: dict) -> list[dict]:
  """Every combination of `values` ({name: sequence of values}), in order; {} gives one empty setting."""
  names = list(values)
  return [dict(zip(names, combo)) for combo in itertools.product(*(tuple(values[n]) for n in names))]


def choose(points: Sequence[dict], min_tokens_per_call: float) -> int:
  """Index of the chosen point (see RULE); each point has 'accuracy' and 'tokens_per_target_call'."""
  if not points:
    raise ValueError('choose() needs at least one validation point.')
  eligible = [i for i, p in enumerate(points) if p['tokens_per_target_call'] >= min_tokens_per_call - 1e-9]
  if not eligible:
    return max(range(len(points)), key=lambda i: (points[i]['tokens_per_target_call'], -i))
  return max(eligible, key=lambda i: (points[i]['accuracy'], points[i]['tokens_per_target_call'], -i))


def choose_step(points: Sequence[dict]) -> int:
  """Index of the chosen checkpoint: the most accurate, then more tokens per call, then the earlier step."""
  if not points:
    raise ValueError('choose_step() needs at least one evaluated checkpoint.')
  return max(range(len(points)),
             key=lambda i: (points[i]['accuracy'], points[i]['tokens_per_target_call'], -points[i]['step']))


def problem_texts(problem: dict) -> tuple[str, str]:
  """(text, canonical content) of a problem: the question as shown, and what two texts must share to be one problem
  (the arithmetic key; for other tasks the whitespace-normalised, case-folded text)."""
  text = str(problem.get('question', problem.get('text', problem.get('prompt', ''))))
  if 'key' in problem:
    return text, problem['key']
  if arithmetic.is_question(text):
    return text, arithmetic.key_of_question(text)
  return text, ' '.join(text.split()).casefold()


def split_overlap(splits: dict[str, Sequence[dict]]) -> dict:
  """{'train/validation': {'text': n, 'content': n}, ...}: problems each pair of splits shares."""
  sets = {name: [set(t) for t in zip(*(problem_texts(p) for p in problems))] if problems else [set(), set()]
          for name, problems in splits.items()}
  return {f'{a}/{b}': {'text': len(sets[a][0] & sets[b][0]), 'content': len(sets[a][1] & sets[b][1])}
          for a, b in itertools.combinations(splits, 2)}
