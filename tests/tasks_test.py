"""The embedded task: a deterministic TFDS builder with right answers, the answer checker, the character tokenizer."""

import dataclasses
import re

import pytest
import tensorflow_datasets as tfds

from cospec_jax.tasks import answers, arithmetic, arithmetic_tfds
from cospec_jax.tasks.tokenizer import CharTokenizer

SMALL = arithmetic_tfds.ArithmeticConfig(name='t', seed=3, train_size=40, validation_size=8, test_size=12,
                                         difficulty=arithmetic.Difficulty(min_steps=1, max_steps=5))


def _answer_from_question(question: str) -> int:
  """An independent reading of the question: start value, then each operation in order."""
  value = int(re.match(r'Start with (-?\d+)\.', question).group(1))
  for word, number in re.findall(r'(Add|Minus|Times) (\d+)\.', question):
    value = {'Add': value + int(number), 'Minus': value - int(number), 'Times': value * int(number)}[word]
  return value


def test_builder_is_deterministic_and_right(tmp_path):
  first = arithmetic_tfds.load_splits(str(tmp_path / 'a'), SMALL)
  second = arithmetic_tfds.load_splits(str(tmp_path / 'b'), SMALL)
  assert first == second
  assert [len(first[s]) for s in ('train', 'validation', 'test')] == [40, 8, 12]
  assert first['train'][0]['question'] != first['test'][0]['question']  # Splits differ.
  for rows in first.values():
    for row in rows:
      expected = _answer_from_question(row['question'])
      assert row['answer'] == str(expected)
      assert answers.extract_answer(row['solution']) == str(expected)
      lines = row['solution'].splitlines()
      assert len(lines) - 1 == row['steps'] and 1 <= row['steps'] <= 5
      for line in lines[:-1]:  # Every step's arithmetic holds.
        a, op, b, c = re.fullmatch(r'(-?\d+)([-+*])(\d+)=(-?\d+)', line).groups()
        assert {'+': int.__add__, '-': int.__sub__, '*': int.__mul__}[op](int(a), int(b)) == int(c)


_WORDED_BEFORE_CASE = dict(swap_share=0.5, words_share=0.5, is_share=0.5, period_share=0.5,
                          connectives='so,then,now', connective_share=0.75)
WORDED = arithmetic.Wording(**_WORDED_BEFORE_CASE, capital_share=0.5, cross_share=0.5)
_STEP = re.compile(r'(?:(so|then|now|So|Then|Now) )?(-?\d+)(?:([-+*x])|( plus | minus | times ))(-?\d+)(=| is )(-?\d+)'
                   r'(\.?)')


def _checked_steps(solution: str) -> list[tuple]:
  """Reads every step line of a (terse or worded) solution independently and checks its arithmetic; returns
  (connective, (the operation as written: a symbol or 'words', equals, period), a, op, b, result) per line."""
  out = []
  for line in solution.splitlines()[:-1]:
    word, a, symbol, spelled, b, equals, c, period = _STEP.fullmatch(line).groups()
    op = {'x': '*'}.get(symbol, symbol) or {' plus ': '+', ' minus ': '-', ' times ': '*'}[spelled]
    assert {'+': int.__add__, '-': int.__sub__, '*': int.__mul__}[op](int(a), int(b)) == int(c), line
    out.append((word, (symbol or 'words', equals, period), int(a), op, int(b), int(c)))
  return out


def test_terse_task_is_unchanged_by_the_wording_knobs():
  """With wording off the problems are the ones earlier versions generated (the wording's draws are a separate
  stream), so a terse run reproduces."""
  assert arithmetic.make_problem(0, 'test', 0)['solution'] == '5-44=-39\n-39-29=-68\n#### -68'
  worded = arithmetic.make_problem(0, 'test', 0, wording=WORDED)
  terse = arithmetic.make_problem(0, 'test', 0)
  assert {k: v for k, v in worded.items() if k != 'solution'} == {k: v for k, v in terse.items() if k != 'solution'}


def test_case_and_cross_knobs_off_leave_the_earlier_wording_unchanged():
  """capital_share and cross_share draw only when on, so the worded world of earlier rounds (the previous pipeline's
  data) is still one setting, problem for problem."""
  before = arithmetic.Wording(**_WORDED_BEFORE_CASE)
  assert arithmetic.make_problem(0, 'test', 0, wording=before)['solution'] == (
      '5-44 is -39\nnow -39 minus 29 is -68\n#### -68')
  assert arithmetic.make_problem(3, 'train', 7, wording=before)['solution'] == (
      'now 2 times 39=78\n78 plus 27 is 105.\n105*4=420.\n420 plus 26=446.\n#### 446')


@pytest.mark.parametrize('family', arithmetic.FAMILIES)
def test_every_wording_is_equivalent_and_each_variant_occurs(family):
  """Worded solutions keep the answer and every step's arithmetic, each step continuing from the last result
  (possibly as the second operand of + or *); swapped operands, words and each connective all occur; the question
  fixes the answer (read independently for arithmetic, by the unit's factor for units)."""
  seen = set()
  for p in arithmetic.iter_problems(1, 'train', 300, wording=WORDED, family=family):
    assert answers.extract_answer(p['solution']) == p['answer']
    if family == 'arithmetic':
      assert int(p['answer']) == _answer_from_question(p['question'])
      value = int(re.match(r'Start with (\d+)', p['question']).group(1))
    else:
      big, larger, small, smaller = re.fullmatch(r'Convert (\d+) (\w+) (\d+) (\w+) to \w+\.', p['question']).groups()
      factor = next(f for a, b, f in arithmetic.UNITS if (a, b) == (larger, smaller))
      assert int(p['answer']) == int(big) * factor + int(small)
      value = int(big)
    for word, (written, equals, period), a, op, b, result in _checked_steps(p['solution']):
      if a != value:  # Only + and * may swap, and then the last result is the second operand.
        assert op in '+*' and b == value, p['solution']
        seen.add('swapped')
      seen.update({word, written, equals, period})
      value = result
  assert {'so', 'then', 'now', 'So', 'Then', 'Now', None, 'words', '+', '*', 'x', 'swapped', '=', ' is ', '.',
          ''} <= seen, seen


def test_wording_knobs_are_checked():
  with pytest.raises(ValueError, match='swap_share'):
    arithmetic.Wording(swap_share=1.5)
  with pytest.raises(ValueError, match='cross_share'):
    arithmetic.Wording(cross_share=-0.1)
  with pytest.raises(ValueError, match='needs connectives'):
    arithmetic.Wording(connective_share=0.5)


def test_builder_mixes_in_the_transfer_family(tmp_path):
  config = arithmetic_tfds.ArithmeticConfig(name='mix', seed=0, train_size=50, validation_size=6, test_size=6,
                                            wording=WORDED, transfer_family='units', transfer_train_share=0.2,
                                            transfer_eval_size=4)
  splits = arithmetic_tfds.load_splits(str(tmp_path), config)
  count = lambda s, f: sum(p['family'] == f for p in splits[s])  # noqa: E731
  assert (count('train', 'arithmetic'), count('train', 'units')) == (40, 10)
  assert [(count(s, 'arithmetic'), count(s, 'units')) for s in ('validation', 'test')] == [(6, 4), (6, 4)]


def test_builder_loads_through_tfds(tmp_path):
  builder = arithmetic_tfds.ArithmeticBuilder(config='smoke', data_dir=str(tmp_path))
  builder.download_and_prepare()
  source = tfds.data_source('cospec_arithmetic/smoke', data_dir=str(tmp_path))
  assert len(source['test']) == 16
  assert b'####' in source['test'][0]['solution']


def test_difficulty_knobs():
  only_add = arithmetic.Difficulty(min_steps=3, max_steps=3, operations='+', max_operand=9)
  for p in arithmetic.iter_problems(0, 'train', 50, only_add):
    assert p['steps'] == 3 and 'Minus' not in p['question'] and 'Times' not in p['question']
  with pytest.raises(ValueError, match='operations'):
    arithmetic.Difficulty(operations='/')
  with pytest.raises(ValueError, match='min_steps'):
    arithmetic.Difficulty(min_steps=4, max_steps=2)


@pytest.mark.parametrize('text, expected', [
    ('a\n#### 1,234', '1234'), ('#### -5', '-5'), ('#### +5', '5'), ('#### 2.50', '2.5'), ('#### $18.', '18'),
    ('#### -0', '0'), ('#### 0.5', '0.5'), ('#### .5', '0.5'), ('#### 12 apples', '12'), ('####', None),
    ('#### none', None), ('no marker 7', None), ('1 #### 3\n#### 4', '4'), ('#### 1,000,000', '1000000'),
])
def test_extract_answer(text, expected):
  assert answers.extract_answer(text) == expected


def test_is_correct():
  assert answers.is_correct('3+4=7\n#### 7', '7')
  assert answers.is_correct('#### 1,200.0', '#### 1200')
  assert not answers.is_correct('3+4=7', '7')  # A missing '####' is wrong, whatever the last number.
  assert not answers.is_correct('#### -7', '7')
  assert answers.extract_answer('3+4=7', fallback_to_last_number=True) == '7'
  with pytest.raises(ValueError, match='holds no number'):
    answers.is_correct('#### 7', 'seven')


def test_char_tokenizer_round_trip():
  tok = CharTokenizer()
  text = arithmetic.make_problem(0, 'test', 5)['question'] + '\n' + arithmetic.make_problem(0, 'test', 5)['solution']
  ids = tok.encode(text)
  assert min(ids) >= 3 and max(ids) < tok.vocab_size
  assert tok.decode(ids) == text
  assert tok.decode([tok.bos_id] + ids + [tok.eos_id] + ids) == text  # Stops at EOS.
  with pytest.raises(ValueError, match="'é'"):
    tok.encode('café')


def test_short_questions_are_the_same_problems():
  """Wording(question='short') writes the question in fewer characters and changes nothing else; both styles read
  back to the problem's key."""
  for index in range(20):
    words = arithmetic.make_problem(0, 'train', index, wording=WORDED)
    short = arithmetic.make_problem(0, 'train', index, wording=dataclasses.replace(WORDED, question='short'))
    assert {k: v for k, v in short.items() if k != 'question'} == {k: v for k, v in words.items() if k != 'question'}
    assert len(short['question']) < len(words['question'])
    key = words['key']
    assert arithmetic.key_of_question(short['question']) == arithmetic.key_of_question(words['question']) == key
  assert arithmetic.render(18, [('*', 3), ('-', 4)], arithmetic.Wording(question='short'))['question'] == (
      'From 18: *3, -4.')
  with pytest.raises(ValueError, match="question='long'"):
    arithmetic.Wording(question='long')
