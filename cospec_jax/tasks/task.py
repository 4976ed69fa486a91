"""Tasks behind one interface: what the models are asked and how their answers are scored.

A task has a `name`, a `tokenizer` (tokenizer.py's interface), and
  problems(split) -> list[dict]            the split's problems, in a fixed order;
  prompt(problem) -> list[int]             the tokens a decoder is given;
  score(completions, problems) -> bool[N]  whether each completion (generated token ids) solves its problem.
Every consumer (the arbiter's rewards and forks, the table, the trace) goes through these three, so a new task is one
class here and one entry in `from_config`.

- `arithmetic`: the embedded procedural task with the character tokenizer (tasks/arithmetic*.py).
- `gsm8k`: GSM8K (tasks/gsm8k.py) with a checkpoint's tokenizer, as a k-shot prompt or inside its chat template.
- `humaneval`, `mbpp`: code, scored by running it with its tests in the sandbox (tasks/code_tasks.py).
Generated text is cut at the task's stop strings before scoring (the decoders stop only at EOS).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import ml_collections
import numpy as np

from cospec_jax.tasks import answers, code_tasks, gsm8k, sandbox
from cospec_jax.tasks.tokenizer import Tokenizer
from cospec_jax.train import data as data_lib

TASKS = ('arithmetic', 'gsm8k', 'humaneval', 'mbpp')


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
  """`text` up to the first of `stops` (all of it when none occurs)."""
  end = min([i for i in (text.find(s) for s in stops) if i >= 0], default=len(text))
  return text[:end]


def _ids(tokenizer: Tokenizer, text: str) -> list[int]:
  bos = getattr(tokenizer, 'bos_id', None)
  return ([bos] if bos is not None else []) + tokenizer.encode(text)


def _texts(tokenizer: Tokenizer, completions, stops: Sequence[str]) -> list[str]:
  return [cut_at_stop(tokenizer.decode([int(t) for t in c]), stops) for c in completions]


@dataclasses.dataclass
class Arithmetic:
  """The embedded task: 'Start with 18. Times 3.' (or, short, 'From 18: *3.') -> '18*3=54\\n#### 54'. Its splits may
  mix in a transfer family ('units'); each task object serves one `family` (`name` is the family)."""

  tokenizer: Tokenizer
  splits: dict
  name: str = 'arithmetic'

  def problems(self, split: str) -> list[dict]:
    return [p for p in self.splits[split] if p.get('family', 'arithmetic') == self.name]

  def families(self) -> list[str]:
    """Every family in the data, arithmetic first."""
    return list(dict.fromkeys(p.get('family', 'arithmetic') for s in self.splits.values() for p in s))

  def for_family(self, family: str) -> 'Arithmetic':
    return dataclasses.replace(self, name=family)

  def prompt(self, problem: dict) -> list[int]:
    return data_lib.prompt_ids(self.tokenizer, problem['question'])

  def score(self, completions, problems: Sequence[dict]) -> np.ndarray:
    return answers.score_completions(self.tokenizer, completions, problems)


@dataclasses.dataclass
class GSM8K:
  """Grade-school math; the answer after '####' must equal the reference. `shots` worked training examples precede
  the question; with `chat`, that text is the user turn of the checkpoint's chat template."""

  tokenizer: Tokenizer
  local_dir: str = ''  # GSM8K's original jsonl files; '' uses TFDS's gsm8k builder.
  data_dir: Optional[str] = None  # TFDS data directory.
  shots: int = 8
  chat: bool = False
  validation_size: int = 500  # Held out of the train file as the validation split.
  name: str = 'gsm8k'
  _loaded: dict = dataclasses.field(default_factory=dict, repr=False)
  STOPS = ('\n\nQuestion:', '\nQuestion:', '<|im_end|>')

  def problems(self, split: str) -> list[dict]:
    """'train' and 'test' are GSM8K's; 'validation' is the last `validation_size` problems of its train file, which
    'train' then leaves out (GSM8K has no validation split, and settings must not be chosen on test)."""
    if split not in self._loaded:
      if split in ('train', 'validation'):
        full = gsm8k.load('train', self.local_dir, self.data_dir)
        cut = len(full) - min(self.validation_size, len(full) // 2)
        self._loaded.update(train=full[:cut], validation=full[cut:])
      else:
        self._loaded[split] = gsm8k.load(split, self.local_dir, self.data_dir)
    return self._loaded[split]

  def prompt(self, problem: dict) -> list[int]:
    text = gsm8k.few_shot_prompt(problem['question'], self.problems('train')[:self.shots])
    if self.chat:
      text = self.tokenizer.apply_chat_template([{'role': 'user', 'content': text + (
          '\nSolve it step by step and end with a line "#### <number>".')}])
      return self.tokenizer.encode(text)  # The template writes its own special tokens.
    return _ids(self.tokenizer, text)

  def score(self, completions, problems: Sequence[dict]) -> np.ndarray:
    return np.array([answers.is_correct(t, p['answer']) for t, p in
                     zip(_texts(self.tokenizer, completions, self.STOPS), problems)], bool)


@dataclasses.dataclass
class HumanEval:
  """Complete the function body after its signature and docstring (base-model style); pass = its tests exit 0."""

  tokenizer: Tokenizer
  limits: sandbox.Limits = sandbox.Limits()
  name: str = 'humaneval'
  STOPS = ('\ndef ', '\nclass ', '\nif __name__', '\nprint(', '\n#', '\nassert ')

  def problems(self, split: str) -> list[dict]:
    if split != 'test':
      raise ValueError(f'HumanEval has only a test split; got split={split!r}.')
    return code_tasks.load_humaneval()

  def prompt(self, problem: dict) -> list[int]:
    return _ids(self.tokenizer, problem['prompt'])

  def score(self, completions, problems: Sequence[dict]) -> np.ndarray:
    programs = [code_tasks.humaneval_program(p, t) for p, t in
                zip(problems, _texts(self.tokenizer, completions, self.STOPS))]
    return np.array([r.passed for r in code_tasks.run_all(programs, self.limits)], bool)


@dataclasses.dataclass
class MBPP:
  """Write a function from its description and its tests, in the standard [BEGIN]/[DONE] format."""

  tokenizer: Tokenizer
  path: str = ''  # MBPP's standard jsonl (mbpp.jsonl).
  limits: sandbox.Limits = sandbox.Limits()
  name: str = 'mbpp'
  _loaded: list = dataclasses.field(default_factory=list, repr=False)
  STOPS = ('[DONE]', '\n[BEGIN]', '\nYou are an expert')
  # The standard split by task_id: prompt 1-10 (few-shot), test 11-510, validation 511-600, train 601-974.
  SPLITS = {'prompt': (1, 10), 'test': (11, 510), 'validation': (511, 600), 'train': (601, 974)}

  def _all(self) -> list[dict]:
    if not self._loaded:
      if not self.path:
        raise ValueError('config.data.path is empty: point it at MBPP\'s mbpp.jsonl.')
      self._loaded.extend(code_tasks.load_mbpp(self.path))
    return self._loaded

  def problems(self, split: str) -> list[dict]:
    if split not in self.SPLITS:
      raise ValueError(f'MBPP split={split!r}; choose one of {sorted(self.SPLITS)}.')
    lo, hi = self.SPLITS[split]
    return [p for p in self._all() if lo <= int(p['task_id']) <= hi]

  def prompt(self, problem: dict) -> list[int]:
    tests = '\n'.join(problem['test_list'])
    return _ids(self.tokenizer, f'You are an expert Python programmer, and here is your task: {problem["text"]} '
                                f'Your code should pass these tests:\n\n{tests}\n[BEGIN]\n')

  def score(self, completions, problems: Sequence[dict]) -> np.ndarray:
    programs = [code_tasks.mbpp_program(p, t) for p, t in
                zip(problems, _texts(self.tokenizer, completions, self.STOPS))]
    return np.array([r.passed for r in code_tasks.run_all(programs, self.limits)], bool)


def from_config(data: ml_collections.ConfigDict, workdir: str, tokenizer_dir: str = ''):
  """The task `data.task` names (default 'arithmetic'). Real tasks read the tokenizer of `tokenizer_dir` (the target
  checkpoint) unless data.tokenizer_dir is set; the embedded one builds its TFDS data set under data.data_dir or
  <workdir>/tfds if needed."""
  name = data.get('task', 'arithmetic')
  if name not in TASKS:
    raise ValueError(f'config.data.task={name!r} is not a task; choose one of {TASKS}.')
  if name == 'arithmetic':
    from cospec_jax.train import trainer
    tokenizer, splits = trainer.load_task(data, workdir)
    return Arithmetic(tokenizer, splits)
  from cospec_jax.tasks.hf_tokenizer import HFTokenizer
  tokenizer = HFTokenizer(data.get('tokenizer_dir') or tokenizer_dir)
  if name == 'gsm8k':
    return GSM8K(tokenizer, data.get('local_dir', ''), data.get('data_dir') or None, data.get('shots', 8),
                 data.get('chat', False))
  if name == 'humaneval':
    return HumanEval(tokenizer)
  return MBPP(tokenizer, data.get('path', ''))
