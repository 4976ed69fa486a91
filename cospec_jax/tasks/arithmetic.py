"""A procedural multi-step arithmetic task in GSM8K's format: question, step-by-step solution, `#### <answer>`.

  question: "Start with 23. Add 5. Times 3. Minus 40."
  solution: "23+5=28\n28*3=84\n84-40=44\n#### 44"

The wording is terse on purpose: every character costs training compute on a CPU.

Every problem is a pure function of (seed, split, index), so a data set is reproducible anywhere without storing it.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Iterator

import numpy as np

OPERATIONS = {'+': 'Add {}.', '-': 'Minus {}.', '*': 'Times {}.'}
_SPLIT_IDS = {'train': 0, 'validation': 1, 'test': 2}


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


def make_problem(seed: int, split: str, index: int, difficulty: Difficulty = Difficulty()) -> dict:
  """Returns {'question', 'solution', 'answer', 'steps'}; `answer` is the final number as text."""
  rng = _rng(seed, split, index)
  value = int(rng.integers(1, difficulty.max_start + 1))
  question, lines = [f'Start with {value}.'], []
  for _ in range(int(rng.integers(difficulty.min_steps, difficulty.max_steps + 1))):
    op = _pick_operation(rng, difficulty)
    operand = int(rng.integers(2, difficulty.max_multiplier + 1) if op == '*' else
                  rng.integers(1, difficulty.max_operand + 1))
    result = {'+': value + operand, '-': value - operand, '*': value * operand}[op]
    question.append(OPERATIONS[op].format(operand))
    lines.append(f'{value}{op}{operand}={result}')
    value = result
  lines.append(f'#### {value}')
  return {'question': ' '.join(question), 'solution': '\n'.join(lines), 'answer': str(value),
          'steps': len(lines) - 1}


def iter_problems(seed: int, split: str, n: int, difficulty: Difficulty = Difficulty()) -> Iterator[dict]:
  for i in range(n):
    yield make_problem(seed, split, i, difficulty)


def problem_id(seed: int, split: str, index: int) -> int:
  """A stable key for TFDS (it hashes keys to shuffle)."""
  return zlib.crc32(f'{seed}/{split}/{index}'.encode())
