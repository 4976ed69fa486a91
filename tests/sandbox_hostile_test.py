"""Hostile programs against the sandbox: each test fails if the escape or the false pass works.

The escapes run twice: with the inner audit hook switched off (`guard=False`), so the operating-system isolation
alone must hold, and with the hook on after the program has tampered with it as it could with the old in-process
guard. Targets on the host are world-writable (and processes to kill run as the sandbox's own uid), so nothing but
the sandbox stands between the program and them. The false passes run with the hook on, as scoring does; the token
thefts among them are shown to work with it off, so the hook is what stops them.
"""

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time

import pytest

from cospec_jax.tasks import sandbox

LIMITS = sandbox.Limits(timeout_s=5, cpu_s=5, memory_mb=512)
TAMPER = '_BLOCKED = (); _ROOT = ""\nimport sys\nsys.audit = lambda *a: None\n'
KEEP = 'keep me'


@pytest.fixture
def host_dir():
  """A directory on the host anyone may write, holding keep.txt (mode 0666), both owned by the sandbox's uid."""
  path = tempfile.mkdtemp(prefix='cospec_hostile_', dir='/tmp')
  os.chmod(path, 0o777)
  keep = os.path.join(path, 'keep.txt')
  with open(keep, 'w') as f:
    f.write(KEEP)
  os.chmod(keep, 0o666)
  if os.geteuid() == 0:
    for owned in (path, keep):
      os.chown(owned, sandbox.NOBODY, sandbox.NOBODY)
  yield path
  shutil.rmtree(path, ignore_errors=True)


def _host_unchanged(path):
  keep = os.path.join(path, 'keep.txt')
  return (sorted(os.listdir(path)) == ['keep.txt'] and open(keep).read() == KEEP
          and stat.S_IMODE(os.stat(keep).st_mode) == 0o666)


WRITES = {
    'open': 'open("{d}/escaped", "w").write("x")',
    'truncate': 'import os\nos.truncate("{d}/keep.txt", 0)',
    'o_trunc': 'import os\nos.open("{d}/keep.txt", os.O_WRONLY | os.O_TRUNC)',
    'link': 'import os\nos.link("{d}/keep.txt", "{d}/linked")',
    'rename': 'import os\nos.rename("{d}/keep.txt", "{d}/renamed")',
    'chmod': 'import os\nos.chmod("{d}/keep.txt", 0)',
    'dir_fd': 'import os\nd = os.open("{d}", os.O_RDONLY)\nos.open("escaped", os.O_WRONLY | os.O_CREAT, dir_fd=d)',
    'sqlite': 'import sqlite3\nsqlite3.connect("{d}/db.sqlite").execute("create table t (x)")',
    'remove': 'import os\nos.remove("{d}/keep.txt")',
    'rmtree': 'import shutil\nshutil.rmtree("{d}")',
    'subprocess': 'import subprocess\nsubprocess.run(["sh", "-c", "echo x > {d}/escaped"], check=True)',
    'system': 'import os\nassert os.system("echo x > {d}/escaped") == 0',
    'ctypes': 'import ctypes\nctypes.CDLL(None).system(b"echo x > {d}/escaped")',
    'posix_spawn': 'import os\nos.posix_spawn("/bin/sh", ["sh", "-c", "echo x > {d}/escaped"], {{}})\nimport time\n'
                   'time.sleep(1)',
}


@pytest.mark.parametrize('guard', [False, True], ids=['os_only', 'tampered_guard'])
@pytest.mark.parametrize('name', sorted(WRITES))
def test_no_write_outside_the_sandbox(host_dir, name, guard):
  program = (TAMPER if guard else '') + WRITES[name].format(d=host_dir)
  r = sandbox.run(program, LIMITS, guard=guard)
  assert _host_unchanged(host_dir), (name, r)


def test_no_read_of_the_host():
  project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  secret = os.path.join(project, 'README.md')
  for path in ('/etc/passwd', '/etc/shadow', secret, os.path.expanduser('~'), project, '/proc/1/environ'):
    r = sandbox.run(f'import os\np = {path!r}\nprint(sorted(os.listdir(p)) if os.path.isdir(p) else open(p).read())',
                    LIMITS, guard=False)
    assert not r.passed and 'FileNotFoundError' in r.stderr, (path, r)
  r = sandbox.run('import os\nprint(os.getuid(), os.getgid(), sorted(os.environ))', LIMITS, guard=False)
  uid = sandbox.NOBODY if os.geteuid() == 0 else os.getuid()  # Root's programs run as nobody.
  assert r.stdout.split()[:2] == [str(uid), str(uid if uid == sandbox.NOBODY else os.getgid())], r
  assert r.stdout.split(None, 2)[2].strip() == "['HOME', 'LANG', 'PATH', 'PWD', 'TMPDIR']", r


def test_no_other_process_environment(monkeypatch):
  monkeypatch.setenv('COSPEC_HOSTILE_SECRET', 'swordfish')
  program = ('import os\nfor pid in [os.getppid(), 1, {pid}]:\n'
             '  try:\n    print(open(f"/proc/{{pid}}/environ").read())\n  except OSError as e:\n    print(e)')
  r = sandbox.run(program.format(pid=os.getpid()), LIMITS, guard=False)
  assert r.passed and 'swordfish' not in r.stdout + r.stderr and r.stdout.count('No such file') == 3, r


@pytest.fixture
def victim():
  """A process outside the sandbox running as the sandbox's own uid, which a kill from it would reach."""
  drop = dict(user=sandbox.NOBODY, group=sandbox.NOBODY, extra_groups=[]) if os.geteuid() == 0 else {}
  proc = subprocess.Popen(['sleep', '60'], start_new_session=True, **drop)
  yield proc
  proc.kill()
  proc.wait()


def test_no_signal_leaves_the_sandbox(victim):
  program = (f'import os, signal\nfor target in ({victim.pid}, {os.getpid()}, os.getppid(), -1):\n'
             '  try:\n    os.kill(target, signal.SIGKILL)\n  except OSError:\n    pass\n'
             f'try:\n  os.killpg({os.getpgid(victim.pid)}, signal.SIGKILL)\nexcept OSError:\n  pass\n'
             'import ctypes\nctypes.CDLL(None).kill(-1, 9)')
  r = sandbox.run(program, LIMITS, guard=False)
  time.sleep(0.2)
  assert victim.poll() is None, r  # And this test process is still alive to check it.


def test_no_network():
  server = socket.socket()
  server.bind(('127.0.0.1', 0))
  server.listen()
  server.setblocking(False)
  port = server.getsockname()[1]
  abstract = socket.socket(socket.AF_UNIX)
  abstract.bind(b'\0cospec-hostile-%d' % os.getpid())
  abstract.listen()
  abstract.setblocking(False)
  program = (f'import socket\nresults = []\nfor family, address in ((socket.AF_INET, ("127.0.0.1", {port})), '
             f'(socket.AF_UNIX, b"\\0cospec-hostile-{os.getpid()}"), (socket.AF_INET, ("1.1.1.1", 53))):\n'
             '  s = socket.socket(family)\n  s.settimeout(1)\n'
             '  try:\n    s.connect(address)\n    results.append("connected")\n'
             '  except OSError as e:\n    results.append(type(e).__name__)\nprint(results)')
  try:
    r = sandbox.run(program, LIMITS, guard=False)
    for listener in (server, abstract):
      with pytest.raises(BlockingIOError):
        listener.accept()
  finally:
    server.close()
    abstract.close()
  assert r.passed and 'connected' not in r.stdout and r.stdout.count('Error') == 3, r


def _survivors(marker: str) -> list[int]:
  """Pids of host processes whose command line holds `marker`."""
  found = []
  for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
      with open(f'/proc/{pid}/cmdline', 'rb') as f:
        if marker.encode() in f.read():
          found.append(int(pid))
    except OSError:
      pass
  return found


DETACH = ('import subprocess, sys\nsubprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "{marker}"],'
          ' start_new_session=True, stdout=sys.stdout, stderr=sys.stderr)\n')


def test_no_process_survives_and_held_pipes_do_not_stretch_the_timeout():
  marker = f'cospec-survivor-{os.getpid()}'
  t0 = time.monotonic()
  r = sandbox.run(DETACH.format(marker=marker), LIMITS, guard=False)  # Exits at once, its child keeps the pipes.
  # Bounds with room for a loaded CI machine, each well below what a stretched run would take (LIMITS' 5 s timeout
  # here, the child's 60 s below).
  assert time.monotonic() - t0 < 4.5 and r.passed, r
  t0 = time.monotonic()
  r = sandbox.run(DETACH.format(marker=marker) + 'while True:\n  pass', sandbox.Limits(timeout_s=2), guard=False)
  elapsed = time.monotonic() - t0
  assert r.status == 'timeout' and 2 <= elapsed < 15, (elapsed, r)
  time.sleep(0.2)
  assert _survivors(marker) == []


def test_fork_bomb_is_held_by_the_process_limit():
  marker = f'cospec-bomb-{os.getpid()}'
  program = ('import os, time\nn = 0\ntry:\n  while True:\n    if os.fork() == 0:\n      time.sleep(60)\n'
             '      os._exit(0)\n    n += 1\nexcept OSError as e:\n  print(n, type(e).__name__)\n'
             f'import subprocess\nsubprocess.Popen(["sh", "-c", ":(){{ :|:& }};: # {marker}"])\ntime.sleep(1)')
  r = sandbox.run(program, sandbox.Limits(timeout_s=3, processes=8), guard=False)
  forks, error = r.stdout.split()[:2]
  assert 0 < int(forks) < 8 and error == 'BlockingIOError', r
  time.sleep(0.2)
  assert _survivors(marker) == []


def test_memory_and_disk_hogs_hit_their_limits():
  r = sandbox.run('x = bytearray(4 * 1024 ** 3)', LIMITS, guard=False)
  assert r.status == 'failed' and 'MemoryError' in r.stderr, r
  r = sandbox.run('x = []\nwhile True:\n  x.append(bytearray(10 ** 7))', LIMITS, guard=False)
  assert r.status == 'failed' and 'MemoryError' in r.stderr, r
  r = sandbox.run('open("big", "wb").write(bytes(32 << 20))', sandbox.Limits(file_mb=16), guard=False)
  assert r.status == 'failed' and 'File too large' in r.stderr, r
  program = 'for i in range(10):\n  open(f"f{i}", "wb").write(bytes(15 << 20))'
  r = sandbox.run(program, sandbox.Limits(file_mb=16, disk_mb=64), guard=False)
  assert r.status == 'failed' and 'No space left on device' in r.stderr, r


@pytest.mark.parametrize('program', ['while True:\n  print("x" * 1000)',
                                     'import sys\nsys.stdout.write("x" * (64 << 20))',
                                     'import sys\nwhile True:\n  sys.stderr.write("y" * 4096)'])
def test_endless_output_is_capped_while_read(program):
  t0 = time.monotonic()
  r = sandbox.run(program, sandbox.Limits(timeout_s=20, output_bytes=1 << 20), guard=False)
  assert r.reason == 'output limit' and time.monotonic() - t0 < 10, r
  assert len(r.stdout) <= 10_000 and len(r.stderr) <= 10_000


TESTS = 'assert f(2) == 5 or abs(f(2) - 5) < 1e-9, "wrong"\nassert abs(f(2) - 5) < 1e-9 and isinstance(f(2), int)\n'
FALSE_PASSES = {
    'exit': 'exit(0)', 'quit': 'quit()', 'sys_exit': 'import sys\nsys.exit(0)', 'os_exit': 'import os\nos._exit(0)',
    'system_exit': 'raise SystemExit', 'kill_self': 'import os, signal\nos.kill(os.getpid(), signal.SIGKILL)',
    'keyboard_interrupt': 'raise KeyboardInterrupt',
    'close_stdout_first': 'import os\nos.close(1)\nos._exit(0)',
    'atexit': 'import atexit, os\natexit.register(os._exit, 0)\nraise SystemExit(0)',
    'read_stdin': 'import sys, os\nprint(sys.stdin.read())\nprint(os.read(0, 100))\nos._exit(0)',
    'swallow_tests': 'def f(x):\n  return 0\n"""',
    'patch_builtins': 'import builtins\nbuiltins.abs = lambda x: 0\ndef f(x):\n  return 0',
    'shadow_builtins': 'def abs(x):\n  return 0\nisinstance = lambda *a: True\ndef f(x):\n  return 0',
    'patch_builtins_when_called': 'def f(x):\n  import builtins\n  builtins.abs = lambda x: 0\n  return 0',
    'frames_of_the_harness': 'import sys, os\nf = sys._getframe()\nwhile f.f_back:\n  f = f.f_back\n'
                             '  print(f.f_code.co_name, sorted(f.f_locals), flush=True)\n'
                             '  f.f_locals.get("gate") and f.f_locals["gate"].release()\nos._exit(0)',
    'crafted_code': 'import os\nf = lambda: 0\nf.__code__ = f.__code__.replace(co_code=f.__code__.co_code)\n'
                    'os._exit(0)',
    'fork_and_exit': 'import os\nif os.fork():\n  os._exit(0)\nimport time\ntime.sleep(1)\nos._exit(0)',
    'thread_exit': 'import threading, os\nthreading.Thread(target=os._exit, args=(0,)).start()\nimport time\n'
                   'time.sleep(5)',
}


# Each prints the token it finds the way the harness does, then leaves: a pass if the theft worked.
THEFTS = {
    'current_frames': 'import sys, os\nfor frame in sys._current_frames().values():\n'
                      '  for v in frame.f_locals.values():\n'
                      '    if isinstance(v, bytes) and len(v) == 32:\n      os.write(1, b"\\n" + v + b"\\n")\n'
                      'os._exit(0)',
    'gc': 'import gc, os\nfor o in gc.get_objects():\n  if type(o) is tuple:\n    for v in o:\n'
          '      if isinstance(v, bytes) and len(v) == 32:\n        os.write(1, b"\\n" + v + b"\\n")\nos._exit(0)',
    'audit_hook': 'import sys, os, time\ndef hook(event, args):\n  if event != "sys._current_frames":\n    return\n'
                  '  f = sys._getframe(1)\n  while f:\n    for v in list(f.f_locals.values()):\n'
                  '      if isinstance(v, bytes) and len(v) == 32:\n        os.write(1, b"\\n" + v + b"\\n")\n'
                  '        os._exit(0)\n    f = f.f_back\nsys.addaudithook(hook)\nf = sys._getframe()\n'
                  'while f:\n  if "gate" in f.f_locals:\n    f.f_locals["gate"].release()\n  f = f.f_back\n'
                  'time.sleep(1)\nos._exit(1)',
}
FALSE_PASSES.update(THEFTS)


@pytest.mark.parametrize('name', sorted(THEFTS))
def test_the_thefts_are_real_the_inner_guard_stops_them(name):
  assert sandbox.run([THEFTS[name], TESTS], LIMITS, guard=False).passed  # Without the guard they work.


def test_hand_made_code_objects_are_refused():
  r = sandbox.run(FALSE_PASSES['crafted_code'], LIMITS)
  assert not r.passed and 'code.__new__ is refused' in r.stderr, r


@pytest.mark.parametrize('name', sorted(FALSE_PASSES))
def test_early_exits_and_token_theft_never_pass(name):
  r = sandbox.run([FALSE_PASSES[name], TESTS], LIMITS)
  assert not r.passed, r


def test_the_same_tests_pass_a_right_answer():
  assert sandbox.run(['def f(x):\n  return 5', TESTS], LIMITS).passed
  assert sandbox.run(['import builtins\nbuiltins.abs = lambda x: 0\ndef f(x):\n  return 5',
                      'assert abs(-2) == 2\n' + TESTS], LIMITS).passed


def test_no_inherited_descriptors_and_a_limit_on_open_files():
  leak_r, leak_w = os.pipe()
  os.set_inheritable(leak_r, True)
  os.set_inheritable(leak_w, True)
  program = ('import os\nopen_fds = []\nfor fd in range(1024):\n  try:\n    os.fstat(fd)\n'
             '    open_fds.append(fd)\n  except OSError:\n    pass\nprint(open_fds)\nfiles = []\n'
             'try:\n  while True:\n    files.append(open("/dev/null"))\nexcept OSError as e:\n'
             '  print(len(files), e.strerror)')
  try:
    r = sandbox.run(program, sandbox.Limits(open_files=32), guard=False)
  finally:
    os.close(leak_r)
    os.close(leak_w)
  assert r.passed and r.stdout.splitlines() == ['[0, 1, 2]', '29 Too many open files'], r
