"""GSM8K from its original files: every reference solution scores correct through the loader and the shared
checker, and TFDS's own builder (fed the same files offline) yields the same problems."""

import json
import os

import pytest
import tensorflow_datasets as tfds

from cospec_jax.tasks import answers, gsm8k

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The original files ship in ../shared/data/gsm8k; a missing file is a failure, not a skip.
GSM8K_DIR = os.environ.get('GSM8K_DIR', os.path.join(ROOT, '..', 'shared', 'data', 'gsm8k'))


def test_every_test_reference_scores_correct():
  problems = gsm8k.load_local('test', GSM8K_DIR)
  assert len(problems) == 1319
  assert all(answers.is_correct(p['solution'], p['answer']) for p in problems)
  assert not any('<<' in p['solution'] for p in problems)  # Calculator annotations are gone.
  # The checker is not vacuous: another problem's answer does not pass.
  assert sum(answers.is_correct(p['solution'], q['answer']) for p, q in zip(problems, problems[1:])) < 50


def test_tfds_builder_gives_the_same_problems(tmp_path, monkeypatch):
  """TFDS's gsm8k builder, its download pointed at the local files (the socratic splits at small stand-ins)."""
  stand_in = tmp_path / 'socratic.jsonl'
  with open(os.path.join(GSM8K_DIR, 'test.jsonl')) as f:
    stand_in.write_text(''.join(f.readline() for _ in range(3)))

  def local_files(self, urls):
    del self
    return {k: os.path.join(GSM8K_DIR, f'{k}.jsonl') if k in ('train', 'test') else str(stand_in) for k in urls}

  monkeypatch.setattr(tfds.download.DownloadManager, 'download_and_extract', local_files)
  from_tfds = gsm8k.load_tfds('test', str(tmp_path / 'tfds'))
  key = lambda p: (p['question'], p['solution'])  # noqa: E731  TFDS shuffles examples when it prepares them.
  assert sorted(from_tfds, key=key) == sorted(gsm8k.load_local('test', GSM8K_DIR), key=key)


def test_parse_and_prompt():
  p = gsm8k.parse(' Ann has 2 apples and buys 1,000 more. How many? ', 'She has 2+1000=<<2+1000=1002>>1,002.\n#### 1,002')
  assert p == {'question': 'Ann has 2 apples and buys 1,000 more. How many?',
               'solution': 'She has 2+1000=1,002.\n#### 1,002', 'answer': '1002'}
  prompt = gsm8k.few_shot_prompt('What is 3+4?', [p])
  assert prompt == ('Question: Ann has 2 apples and buys 1,000 more. How many?\nAnswer: She has 2+1000=1,002.\n'
                    '#### 1,002\n\nQuestion: What is 3+4?\nAnswer:')
  with pytest.raises(ValueError, match='####'):
    gsm8k.parse('q', 'no final line')


def test_missing_files_name_the_fix(tmp_path):
  with pytest.raises(FileNotFoundError, match='test.jsonl'):
    gsm8k.load_local('test', str(tmp_path))
  with pytest.raises(ValueError, match="'dev'"):
    gsm8k.load_local('dev', str(tmp_path))
  (tmp_path / 'test.jsonl').write_text(json.dumps({'question': 'q', 'answer': 'x\n#### 7'}) + '\n')
  assert gsm8k.load_local('test', str(tmp_path))[0]['answer'] == '7'


def test_bad_lines_name_the_file_the_line_and_the_field(tmp_path):
  good = json.dumps({'question': 'q', 'answer': 'x\n#### 7'})
  for line, message in [('{"question": "q", ', r'test.jsonl, line 2: not valid JSON'),
                        (json.dumps({'question': 'q'}), r"test.jsonl, line 2: field 'answer' is missing"),
                        (json.dumps({'question': 'q', 'answer': 'no final line'}),
                         r"test.jsonl, line 2, field 'answer': .*has no \"#### <number>\" line"),
                        (json.dumps({'question': 3, 'answer': 'x\n#### 7'}),
                         r"test.jsonl, line 2, field 'question': expected a string")]:
    (tmp_path / 'test.jsonl').write_text(f'{good}\n{line}\n')
    with pytest.raises(ValueError, match=message):
      gsm8k.load_local('test', str(tmp_path))
