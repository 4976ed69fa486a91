"""A procedural multi-step arithmetic task in GSM8K's format: question, step-by-step solution, `#### <answer>`.

  question: "Start with 23. Add 5. Times 3. Minus 40."
  solution: "23+5=28\n28*3=84\n84-40=44\n#### 44"

The wording is terse on purpose: every character costs training compute on a CPU.

Every problem is a pure function of (seed, split, index), so a data set is reproducible anywhere without storing it.

The splits are disjoint by construction, for every seed and size: a problem's canonical content (`problem_key`: the
start and the operations, which the question text renders one to one) hashes to one of `N_BUCKETS` buckets, and
each split draws only problems of its own buckets (`SPLIT_BUCKETS`). A training problem can therefore never appear in
validation or test, under any seed. Validation and test also hold no problem twice; train may (it is sampled).
"""

from __future__ import annotations

import dataclasses
import itertools
import zlib
from typing import Iterator

import numpy as np

OPERATIONS = {'+': 'Add {}.', '-': 'Minus {}.', '*': 'Times {}.'}
_SPLIT_IDS = {'train': 0, 'validation': 1, 'test': 2}
N_BUCKETS = 10
SPLIT_BUCKETS = {'train': range(0, 8), 'validation': range(8, 9), 'test': range(9, 10)}  # 80/10/10 of the space.
UNIQUE_SPLITS = ('validation', 'test')  # Splits in which no problem repeats.


@dataclasses.dataclass(frozen=True)
class Difficulty:
  """Knobs of the generator."""

  min_steps: int = 2  # Operations per problem, inclusive range.
  max_steps: int = 4
  max_start: int = 50  # The starting number is drawn from [1, max_start].
  max_operand: int = 50  # Operands of + and - are drawn from [1, max_operand].
  max_multiplier: int = 9  # Multipliers are drawn from [2, max_multiplier].
  operations: str = '+-*'  # Which of '+', '-', '*' may appear.
  multiply_share: float = 1 / 3  # Probability that a step is a multiplication (when '*' is allowed).

  def __post_init__(self):
    if not 1 <= self.min_steps <= self.max_steps:
      raise ValueError(f'Need 1 <= min_steps <= max_steps; got {self.min_steps}, {self.max_steps}.')
    if not self.operations or set(self.operations) - set(OPERATIONS):
      raise ValueError(f'operations={self.operations!r}: use a non-empty subset of {"".join(OPERATIONS)!r}.')
    if self.max_start < 1 or self.max_operand < 1 or self.max_multiplier < 2:
      raise ValueError('max_start and max_operand must be >= 1 and max_multiplier >= 2; got '
                       f'{self.max_start}, {self.max_operand}, {self.max_multiplier}.')
    if not 0.0 <= self.multiply_share <= 1.0:
      raise ValueError(f'multiply_share={self.multiply_share} must be in [0, 1].')


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
  if split not in _SPLIT_IDS:
    raise ValueError(f'split={split!r}; use one of {sorted(_SPLIT_IDS)}.')
  return np.random.default_rng([seed, _SPLIT_IDS[split], index])


def _pick_operation(rng: np.random.Generator, difficulty: Difficulty) -> str:
  ops = difficulty.operations
  if '*' in ops and len(ops) > 1:
    if rng.random() < difficulty.multiply_share:
      return '*'
    ops = ops.replace('*', '')
  return ops[rng.integers(len(ops))]


def problem_key(start: int, steps) -> str:
  """The canonical content of a problem, e.g. '18*3*2-19': what two questions must share to be the same problem."""
  return str(start) + ''.join(f'{op}{operand}' for op, operand in steps)


def key_of_question(question: str) -> str:
  """`problem_key` recovered from a question's text ('Start with 18. Times 3.' -> '18*3')."""
  words = {text.split()[0]: op for op, text in OPERATIONS.items()}
  sentences = [s.strip() for s in question.split('.') if s.strip()]
  if not sentences or not sentences[0].startswith('Start with '):
    raise ValueError(f'Not an arithmetic question: {question!r}.')
  steps = [(words[w.split()[0]], int(w.split()[1])) for w in sentences[1:]]
  return problem_key(int(sentences[0].split()[-1]), steps)


def split_of_key(key: str) -> str:
  """The split that owns the problem `key` (a stable hash, the same for every seed and size)."""
  bucket = zlib.crc32(key.encode()) % N_BUCKETS
  return next(split for split, buckets in SPLIT_BUCKETS.items() if bucket in buckets)


def _draw(rng: np.random.Generator, difficulty: Difficulty) -> tuple[int, list[tuple[str, int]]]:
  """A candidate problem: (start, [(op, operand), ...])."""
  start = int(rng.integers(1, difficulty.max_start + 1))
  steps = []
  for _ in range(int(rng.integers(difficulty.min_steps, difficulty.max_steps + 1))):
    op = _pick_operation(rng, difficulty)
    operand = int(rng.integers(2, difficulty.max_multiplier + 1) if op == '*' else
                  rng.integers(1, difficulty.max_operand + 1))
    steps.append((op, operand))
  return start, steps


def render(start: int, steps) -> dict:
  """{'question', 'solution', 'answer', 'steps', 'key'} of the problem (start, steps)."""
  value, question, lines = start, [f'Start with {start}.'], []
  for op, operand in steps:
    result = {'+': value + operand, '-': value - operand, '*': value * operand}[op]
    question.append(OPERATIONS[op].format(operand))
    lines.append(f'{value}{op}{operand}={result}')
    value = result
  lines.append(f'#### {value}')
  return {'question': ' '.join(question), 'solution': '\n'.join(lines), 'answer': str(value),
          'steps': len(lines) - 1, 'key': problem_key(start, steps)}


def iter_problems(seed: int, split: str, n: int, difficulty: Difficulty = Difficulty()) -> Iterator[dict]:
  """The first `n` problems of `split`: candidates drawn from (seed, split, attempt) for attempt = 0, 1, ..., keeping
  those whose key belongs to `split` (and, in UNIQUE_SPLITS, that have not appeared before in it)."""
  seen, kept = set(), 0
  patience = 100 * N_BUCKETS  # Attempts in a row without a new problem before the space counts as exhausted.
  misses = 0
  for attempt in itertools.count():
    if kept == n:
      return
    start, steps = _draw(_rng(seed, split, attempt), difficulty)
    key = problem_key(start, steps)
    if split_of_key(key) != split or (split in UNIQUE_SPLITS and key in seen):
      misses += 1
      if misses > patience:
        raise ValueError(f'The difficulty {difficulty} has too few distinct problems for {n} {split} problems '
                         f'(found {kept}); widen the operand ranges or steps, or lower the split size.')
      continue
    misses = 0
    seen.add(key)
    kept += 1
    yield render(start, steps)


def make_problem(seed: int, split: str, index: int, difficulty: Difficulty = Difficulty()) -> dict:
  """Problem `index` of `split` (see iter_problems): {'question', 'solution', 'answer', 'steps', 'key'}."""
  return next(itertools.islice(iter_problems(seed, split, index + 1, difficulty), index, None))


def problem_id(seed: int, split: str, index: int) -> int:
  """A stable key for TFDS (it hashes keys to shuffle)."""
  return zlib.crc32(f'{seed}/{split}/{index}'.encode())
