"""The embedded task: a deterministic TFDS builder with right answers, the answer checker, the character tokenizer."""

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
  first = {s: arithmetic_tfds.load_split(s, str(tmp_path / 'a'), SMALL) for s in ('train', 'validation', 'test')}
  second = {s: arithmetic_tfds.load_split(s, str(tmp_path / 'b'), SMALL) for s in ('train', 'validation', 'test')}
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
