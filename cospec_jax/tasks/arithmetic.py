"""A procedural multi-step arithmetic task in GSM8K's format: question, step-by-step solution, `#### <answer>`.

  question: "Start with 23. Add 5. Times 3. Minus 40."                    (or, short, "From 23: +5, *3, -40.")
  solution: "23+5=28\n28*3=84\n84-40=44\n#### 44"                           (terse, the default)
            "so 5+23=28.\n28 times 3 is 84\nthen 84-40=44\n#### 44"        (with freedom of wording)

`Wording` lets each step be written in several equivalent ways (operand order for + and *, the operation as a
symbol or a word, '=' or ' is ', a closing period or none, an optional connective word), drawn at random per step: two models trained on the same data then disagree often on
wording and rarely on substance, as real draft/target pairs do. The answer checker reads only `#### <answer>`.

A second family, `units` ("Convert 3 weeks 4 days to days." -> "3*7=21\n21+4=25\n#### 25", with the same wording
freedom), can join the training mixture: the transfer family, on which an arbiter trained on arithmetic alone is
evaluated.

Every problem is a pure function of (seed, split, index), so a data set is reproducible anywhere without storing it.

The splits are disjoint by construction, for every seed and size: a problem's canonical content (`problem_key`: the
start and the operations, which the question text renders one to one) hashes to one of `N_BUCKETS` buckets, and
each split draws only problems of its own buckets (`SPLIT_BUCKETS`). A training problem can therefore never appear in
validation or test, under any seed. Validation and test also hold no problem twice; train may (it is sampled).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import zlib
from typing import Callable, Iterator

import numpy as np

OPERATIONS = {'+': 'Add {}.', '-': 'Minus {}.', '*': 'Times {}.'}
OPERATION_WORDS = {'+': 'plus', '-': 'minus', '*': 'times'}
QUESTION_STYLES = ('words', 'short')
# The transfer family's conversions: (larger unit, smaller unit, smaller units per larger one).
UNITS = (('weeks', 'days', 7), ('days', 'hours', 24), ('feet', 'inches', 12), ('hours', 'minutes', 60),
         ('years', 'months', 12), ('minutes', 'seconds', 60))
FAMILIES = ('arithmetic', 'units')
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


@dataclasses.dataclass(frozen=True)
class Wording:
  """How freely a solution step is written; every rendering of a step is equivalent. The defaults (all off) give
  the terse task, '18*3=54'."""

  swap_share: float = 0.0  # Probability that a + or * step writes its operands swapped ('3*18=54').
  words_share: float = 0.0  # Probability that the operation is a word ('18 times 3=54').
  is_share: float = 0.0  # Probability that the result follows ' is ' ('18*3 is 54').
  period_share: float = 0.0  # Probability that a step ends with a period ('18*3=54.').
  connectives: str = ''  # Comma-separated words that may open a step, e.g. 'so,then'.
  connective_share: float = 0.0  # Probability that a step opens with one of them (chosen uniformly).
  capital_share: float = 0.0  # Probability that an opening connective is capitalised ('So 54 times 2 is 108').
  cross_share: float = 0.0  # Probability that a multiplication written as a symbol uses 'x' ('18x3=54').
  # How an arithmetic question is written: 'words' ('Start with 18. Times 3. Minus 4.') or 'short' ('From 18: *3,
  # -4.', the same problem in about 60% of the characters: a cheaper sequence to train on).
  question: str = 'words'

  def shares(self) -> list[str]:
    """The names of the probability fields (every '*_share'), so a new knob is checked and counted by `free`."""
    return [f.name for f in dataclasses.fields(self) if f.name.endswith('_share')]

  def __post_init__(self):
    for name in self.shares():
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f'Wording({name}={getattr(self, name)}) must be a probability in [0, 1].')
    if self.connective_share > 0 and not self.words():
      raise ValueError(f'Wording(connective_share={self.connective_share}) needs connectives, e.g. "so,then".')
    if any(not w.isalpha() for w in self.words()):
      raise ValueError(f'Wording(connectives={self.connectives!r}): give comma-separated words of letters.')
    if self.question not in QUESTION_STYLES:
      raise ValueError(f'Wording(question={self.question!r}): choose one of {QUESTION_STYLES}.')

  def words(self) -> list[str]:
    return [w.strip() for w in self.connectives.split(',') if w.strip()]

  @property
  def free(self) -> bool:
    return any(getattr(self, name) for name in self.shares())


def _rng(seed: int, split: str, index: int, *stream: int) -> np.random.Generator:
  """The generator of candidate `index` of `split`; `stream` separates independent draws (a family, the wording)."""
  if split not in _SPLIT_IDS:
    raise ValueError(f'split={split!r}; use one of {sorted(_SPLIT_IDS)}.')
  return np.random.default_rng([seed, _SPLIT_IDS[split], index, *stream])


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


def units_key(big: int, unit: int, small: int) -> str:
  """The canonical content of a conversion problem, e.g. 'units:3 weeks 4 days'."""
  larger, smaller, _ = UNITS[unit]
  return f'units:{big} {larger} {small} {smaller}'


# The questions `render` and `render_units` write, one pattern per style and family, each capturing the problem's
# content; anything else (a GSM8K question that opens with 'From ...') is not a question of this task.
_QUESTION_OPS = {text.split()[0]: op for op, text in OPERATIONS.items()}  # 'Add' -> '+': the words `render` writes.
_QUESTION_STEP = '(' + '|'.join(_QUESTION_OPS) + r') (\d+)'
_WORDS_QUESTION = re.compile(r'Start with (\d+)\.((?: ' + _QUESTION_STEP + r'\.)*)')
_SHORT_STEP = '([' + re.escape(''.join(OPERATIONS)) + r'])(\d+)'  # '*3': the symbol and operand `render` writes.
_SHORT_QUESTION = re.compile(r'From (\d+):((?: ' + _SHORT_STEP + ',)* ' + _SHORT_STEP + r')\.')
_UNITS_QUESTION = re.compile(r'Convert (\d+ [a-z]+ \d+ [a-z]+) to [a-z]+\.')


def key_of_question(question: str) -> str:
  """The problem key recovered from a question's text ('Start with 18. Times 3.' or 'From 18: *3.' -> '18*3';
  'Convert 3 weeks 4 days to days.' -> 'units:3 weeks 4 days')."""
  if match := _UNITS_QUESTION.fullmatch(question):
    return 'units:' + match.group(1)
  if match := _SHORT_QUESTION.fullmatch(question):
    return problem_key(int(match.group(1)), [(op, int(n)) for op, n in re.findall(_SHORT_STEP, match.group(2))])
  if match := _WORDS_QUESTION.fullmatch(question):
    return problem_key(int(match.group(1)),
                       [(_QUESTION_OPS[word], int(n)) for word, n in re.findall(_QUESTION_STEP, match.group(2))])
  raise ValueError(f'Not an arithmetic or units question: {question!r}.')


def is_question(text: str) -> bool:
  """Whether `text` is a question of this task (any style, either family), which `key_of_question` reads."""
  return any(p.fullmatch(text) for p in (_WORDS_QUESTION, _SHORT_QUESTION, _UNITS_QUESTION))


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


def _draw_units(rng: np.random.Generator, difficulty: Difficulty) -> tuple[int, int, int]:
  """A candidate conversion: (amount of the larger unit, index into UNITS, amount of the smaller unit)."""
  unit = int(rng.integers(len(UNITS)))
  return int(rng.integers(1, difficulty.max_start + 1)), unit, int(rng.integers(1, UNITS[unit][2]))


def write_step(value: int, op: str, operand: int, result: int, wording: Wording = Wording(),
               rng: np.random.Generator = None) -> str:
  """One solution line, '18*3=54', or an equivalent rendering drawn with `rng` as `wording` allows."""
  if not wording.free:
    return f'{value}{op}{operand}={result}'
  connective = rng.random() < wording.connective_share
  word = wording.words()[rng.integers(len(wording.words()))] + ' ' if connective else ''
  a, b = (operand, value) if op in '+*' and rng.random() < wording.swap_share else (value, operand)
  operation = f' {OPERATION_WORDS[op]} ' if rng.random() < wording.words_share else op
  equals = ' is ' if rng.random() < wording.is_share else '='
  period = '.' if rng.random() < wording.period_share else ''
  # The later knobs draw only when on, so a wording without them renders exactly as before they existed.
  if word and wording.capital_share and rng.random() < wording.capital_share:
    word = word.capitalize()
  if operation == '*' and wording.cross_share and rng.random() < wording.cross_share:
    operation = 'x'
  return f'{word}{a}{operation}{b}{equals}{result}{period}'


def solve(start: int, steps, wording: Wording = Wording(), rng: np.random.Generator = None) -> tuple[str, int]:
  """(solution text ending in '#### <answer>', answer) of applying `steps` ([(op, operand), ...]) to `start`."""
  value, lines = start, []
  for op, operand in steps:
    result = {'+': value + operand, '-': value - operand, '*': value * operand}[op]
    lines.append(write_step(value, op, operand, result, wording, rng))
    value = result
  lines.append(f'#### {value}')
  return '\n'.join(lines), value


def render(start: int, steps, wording: Wording = Wording(), rng: np.random.Generator = None) -> dict:
  """{'question', 'solution', 'answer', 'steps', 'key', 'family'} of the arithmetic problem (start, steps)."""
  solution, value = solve(start, steps, wording, rng)
  if wording.question == 'short':
    question = f'From {start}: ' + ', '.join(f'{op}{operand}' for op, operand in steps) + '.'
  else:
    question = ' '.join([f'Start with {start}.'] + [OPERATIONS[op].format(operand) for op, operand in steps])
  return {'question': question, 'solution': solution, 'answer': str(value), 'steps': len(steps),
          'key': problem_key(start, steps), 'family': 'arithmetic'}


def render_units(big: int, unit: int, small: int, wording: Wording = Wording(), rng: np.random.Generator = None
                 ) -> dict:
  """The conversion problem 'Convert <big> <larger> <small> <smaller> to <smaller>.', solved in two steps."""
  larger, smaller, factor = UNITS[unit]
  solution, value = solve(big, [('*', factor), ('+', small)], wording, rng)
  return {'question': f'Convert {big} {larger} {small} {smaller} to {smaller}.', 'solution': solution,
          'answer': str(value), 'steps': 2, 'key': units_key(big, unit, small), 'family': 'units'}


def _candidate(seed: int, split: str, attempt: int, difficulty: Difficulty, wording: Wording, family: str
               ) -> tuple[str, Callable[[], dict]]:
  """(key, render it) of candidate `attempt`: the content and the wording come from separate streams, so the terse
  task's problems do not depend on the wording's draws."""
  if family == 'arithmetic':
    start, steps = _draw(_rng(seed, split, attempt), difficulty)
    return problem_key(start, steps), lambda: render(start, steps, wording, _rng(seed, split, attempt, 0, 1))
  big, unit, small = _draw_units(_rng(seed, split, attempt, 1), difficulty)
  return units_key(big, unit, small), lambda: render_units(big, unit, small, wording,
                                                           _rng(seed, split, attempt, 1, 1))


def iter_problems(seed: int, split: str, n: int, difficulty: Difficulty = Difficulty(), wording: Wording = Wording(),
                  family: str = 'arithmetic') -> Iterator[dict]:
  """The first `n` problems of `family` in `split`: candidates drawn from (seed, split, attempt) for attempt = 0, 1,
  ..., keeping those whose key belongs to `split` (and, in UNIQUE_SPLITS, that have not appeared before in it)."""
  if family not in FAMILIES:
    raise ValueError(f'family={family!r}; choose one of {FAMILIES}.')
  seen, kept = set(), 0
  patience = 100 * N_BUCKETS  # Attempts in a row without a new problem before the space counts as exhausted.
  misses = 0
  for attempt in itertools.count():
    if kept == n:
      return
    key, make = _candidate(seed, split, attempt, difficulty, wording, family)
    if split_of_key(key) != split or (split in UNIQUE_SPLITS and key in seen):
      misses += 1
      if misses > patience:
        raise ValueError(f'The difficulty {difficulty} has too few distinct problems for {n} {split} problems '
                         f'(found {kept}); widen the operand ranges or steps, or lower the split size.')
      continue
    misses = 0
    seen.add(key)
    kept += 1
    yield make()


def make_problem(seed: int, split: str, index: int, difficulty: Difficulty = Difficulty(), wording: Wording = Wording(),
                 family: str = 'arithmetic') -> dict:
  """Problem `index` of `split` (see iter_problems): {'question', 'solution', 'answer', 'steps', 'key', 'family'}."""
  return next(itertools.islice(iter_problems(seed, split, index + 1, difficulty, wording, family), index, None))


def problem_id(seed: int, split: str, index: int) -> int:
  """A stable key for TFDS (it hashes keys to shuffle)."""
  return zlib.crc32(f'{seed}/{split}/{index}'.encode())
