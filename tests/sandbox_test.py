"""The code-execution sandbox runs what it should, reports how a run ended, refuses to run unisolated unless told, and
HumanEval's canonical solutions pass in it (wrong ones fail). Hostile programs: sandbox_hostile_test.py."""

import json
import signal
import time

import pytest

from cospec_jax.tasks import code_tasks, sandbox

LIMITS = sandbox.Limits(timeout_s=3, cpu_s=3, memory_mb=512)


def test_isolation_is_available_here():
  assert sandbox.isolation_error() == ''  # CI installs bubblewrap; without it every code task would be refused.


def test_a_good_program_passes_and_may_use_its_directory():
  r = sandbox.run('open("notes.txt", "w").write("ok")\nprint(open("notes.txt").read(), 6 * 7)', LIMITS)
  assert r.passed and r.stdout == 'ok 42\n' and r.reason == ''  # The pass token's line is not in stdout.
  r = sandbox.run('raise SystemExit(3)', LIMITS)
  assert (r.status, r.returncode, r.reason) == ('failed', 3, 'exit status 3')
  r = sandbox.run(['x = 6', 'y = x * 7', 'print(x, y)'], LIMITS)  # Sections share one namespace.
  assert r.passed and r.stdout == '6 42\n'


def test_infinite_loop_is_stopped_by_the_timeout_or_the_cpu_limit():
  t0 = time.monotonic()
  r = sandbox.run('while True:\n  pass', sandbox.Limits(timeout_s=2, cpu_s=60))
  # Room for a loaded CI machine; the CPU limit (60 s) would take far longer.
  assert (r.status, r.returncode, r.reason) == ('timeout', None, 'timeout') and time.monotonic() - t0 < 15
  r = sandbox.run('while True:\n  pass', sandbox.Limits(timeout_s=60, cpu_s=1))
  assert r.status == 'failed' and r.reason == f'killed by {signal.SIGXCPU.name}', r  # RLIMIT_CPU's signal.


def test_the_directory_is_fresh():
  sandbox.run('open("left.txt", "w").write("x")', LIMITS)
  r = sandbox.run('import os\nprint(os.getcwd(), sorted(os.listdir(".")))', LIMITS)
  assert r.passed and r.stdout == '/tmp []\n', r


def test_without_isolation_it_refuses_unless_told(monkeypatch):
  monkeypatch.setattr(sandbox, 'isolation_error', lambda: 'bwrap is not installed: apt-get install bubblewrap.')
  monkeypatch.delenv('COSPEC_ALLOW_UNISOLATED', raising=False)
  with pytest.raises(sandbox.SandboxUnavailable, match='apt-get install bubblewrap.*COSPEC_ALLOW_UNISOLATED=1'):
    sandbox.run('print(1)', LIMITS)
  unisolated = sandbox.Limits(timeout_s=3, cpu_s=3, memory_mb=512, require_isolation=False)
  r = sandbox.run('import os\nprint(os.path.exists("/etc/passwd"))', unisolated)
  assert r.passed and r.stdout == 'True\n'  # Really outside bwrap, which has no /etc.
  assert not sandbox.run(['exit(0)', 'assert False'], unisolated).passed
  monkeypatch.setenv('COSPEC_ALLOW_UNISOLATED', '1')
  assert sandbox.run('print(1)', LIMITS).passed


def test_humaneval_canonical_solutions_pass_and_wrong_ones_fail():
  problems = code_tasks.load_humaneval()
  assert len(problems) == 164
  results = code_tasks.run_all([code_tasks.humaneval_program(p, p['canonical_solution']) for p in problems])
  failed = [p['task_id'] for p, r in zip(problems, results) if not r.passed]
  assert not failed, failed
  wrong = code_tasks.run_all([code_tasks.humaneval_program(p, '    return None\n') for p in problems[:10]])
  assert not any(r.passed for r in wrong)


def test_a_completion_cannot_swallow_the_tests():
  sections = ['def f(x):\n  return 0\n_ = """\n', 'assert f(2) == 5  # """  # Closes the string in one program.\n']
  assert sandbox.run(''.join(sections), LIMITS).passed  # One compile unit: the assert is inside the string.
  assert not sandbox.run(sections, LIMITS).passed  # Sections compile on their own.


def test_humaneval_problems_without_tests_are_refused():
  problem = {'task_id': 'HumanEval/X', 'prompt': 'def f():\n', 'test': 'def check(c):\n  pass\n', 'entry_point': 'f'}
  with pytest.raises(ValueError, match='HumanEval/X.*no assert'):
    code_tasks._check_humaneval(problem)
  with pytest.raises(ValueError, match="HumanEval/X.*'test'"):
    code_tasks._check_humaneval(dict(problem, test=''))


def _write(path, rows):
  path.write_text(''.join(r if isinstance(r, str) else json.dumps(r) + '\n' for r in rows))
  return str(path)


ADD = {'task_id': 2, 'text': 'Write a function to add two numbers.', 'code': 'def add(a, b):\n  return a + b',
       'test_list': ['assert add(1, 2) == 3', 'assert add(-1, 1) == 0'], 'test_setup_code': ''}


def test_mbpp_from_a_jsonl(tmp_path):
  (problem,) = code_tasks.load_mbpp(_write(tmp_path / 'mbpp.jsonl', [ADD]))
  assert problem['prompt'] == 'Write a function to add two numbers.\nassert add(1, 2) == 3'
  assert sandbox.run(code_tasks.mbpp_program(problem, problem['code']), LIMITS).passed
  assert not sandbox.run(code_tasks.mbpp_program(problem, 'def add(a, b):\n  return a - b'), LIMITS).passed
  assert not sandbox.run(code_tasks.mbpp_program(problem, 'exit(0)'), LIMITS).passed


def test_mbpp_errors_name_the_file_the_line_and_the_field(tmp_path):
  path = _write(tmp_path / 'mbpp.jsonl', [ADD, '\n', {'task_id': 3, 'text': 'x'}])
  with pytest.raises(ValueError, match=r"mbpp.jsonl, line 3: field 'code' is missing"):
    code_tasks.load_mbpp(path)
  path = _write(tmp_path / 'mbpp.jsonl', [ADD, '{"task_id": 4,\n'])
  with pytest.raises(ValueError, match=r'mbpp.jsonl, line 2: not valid JSON'):
    code_tasks.load_mbpp(path)
  path = _write(tmp_path / 'mbpp.jsonl', [ADD, dict(ADD, task_id=7, test_list=[])])
  with pytest.raises(ValueError, match=r"line 2, field 'test_list': task 7 has no tests"):
    code_tasks.load_mbpp(path)
  for bad in ('assert True', ['assert add(1, 2) == 3', 'add(1, 2)'], ['']):
    path = _write(tmp_path / 'mbpp.jsonl', [dict(ADD, test_list=bad)])
    with pytest.raises(ValueError, match=r"line 1, field 'test_list': task 2: expected a list of assert lines"):
      code_tasks.load_mbpp(path)
