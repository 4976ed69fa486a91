"""GSM8K (Cobbe et al. 2021): grade-school math word problems, scored by their final number.

Two ways in, giving the same problems:
  - `load_tfds(split, data_dir)`: TensorFlow Datasets' own `gsm8k` builder (it downloads the original jsonl files
    once, then reads them from data_dir; array_record files, so no TensorFlow is needed);
  - `load_local(split, directory)`: the original `train.jsonl` / `test.jsonl` from a local directory (offline).
Each problem is {'question', 'solution' (calculator annotations <<...>> removed), 'answer' (the normalized number
after '####')}, the shape of the embedded task's problems, so `answers.is_correct` scores both.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

from cospec_jax.tasks import answers, jsonl

SPLITS = ('train', 'test')
_CALCULATOR = re.compile(r'<<[^>]*>>')


def parse(question: str, full_answer: str) -> dict:
  """One problem from GSM8K's two fields (the answer field holds the worked solution and '#### n')."""
  answer = answers.extract_answer(full_answer)
  if answer is None:
    raise ValueError(f'GSM8K answer field {full_answer[-80:]!r} has no "#### <number>" line.')
  return {'question': question.strip(), 'solution': _CALCULATOR.sub('', full_answer).strip(), 'answer': answer}


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f'GSM8K split {split!r} is not one of {SPLITS}.')


def load_local(split: str, directory: str) -> list[dict]:
  """The problems of `<directory>/<split>.jsonl` (GSM8K's original files), in file order. A bad line is a
  ValueError naming the file, the line and the field."""
  _check_split(split)
  path = os.path.join(directory, f'{split}.jsonl')
  if not os.path.exists(path):
    raise FileNotFoundError(f'No GSM8K file at {path}: point at the directory holding the original train.jsonl and '
                            'test.jsonl (github.com/openai/grade-school-math), or use load_tfds to download.')
  problems = []
  for number, record in jsonl.read(path, ('question', 'answer')):
    for field in ('question', 'answer'):
      if not isinstance(record[field], str):
        raise jsonl.field_error(path, number, field, f'expected a string, got {record[field]!r}.')
    try:
      problems.append(parse(record['question'], record['answer']))
    except ValueError as e:
      raise jsonl.field_error(path, number, 'answer', str(e)) from None
  return problems


def load_tfds(split: str, data_dir: str | None = None) -> list[dict]:
  """The problems of TFDS's `gsm8k` builder (downloaded and prepared on first use), in TFDS's order (it shuffles
  examples when it prepares them; the set is the original files')."""
  _check_split(split)
  # Imported here (loading local files needs no TFDS), and by module: the registry's lookup would import TensorFlow.
  from tensorflow_datasets.text.gsm8k import gsm8k as gsm8k_tfds
  builder = gsm8k_tfds.Gsm8k(data_dir=data_dir, file_format='array_record')
  builder.download_and_prepare()
  source = builder.as_data_source()[split]
  rows = [source[i] for i in range(len(source))]
  text = lambda v: v.decode() if isinstance(v, bytes) else v  # noqa: E731
  return [parse(text(r['question']), text(r['answer'])) for r in rows]


def load(split: str, local_dir: str = '', data_dir: str | None = None) -> list[dict]:
  """`load_local` when `local_dir` is given, else `load_tfds`."""
  return load_local(split, local_dir) if local_dir else load_tfds(split, data_dir)


def few_shot_prompt(question: str, exemplars: Sequence[dict]) -> str:
  """A plain-text k-shot prompt: each exemplar as 'Question: ...\\nAnswer: <solution>' and then the question."""
  shots = ''.join(f'Question: {e["question"]}\nAnswer: {e["solution"]}\n\n' for e in exemplars)
  return f'{shots}Question: {question.strip()}\nAnswer:'
