"""Running generated code in an operating-system sandbox; a pass is a token printed after the last test.

`run(program, limits)` runs Python source (or a sequence of sources: completion, then tests) under bubblewrap
(`bwrap`, Debian's `bubblewrap` package), which gives each program:
  - its own user, mount, pid, network, IPC, UTS and cgroup namespaces; no capabilities; when this process is root,
    the program runs as nobody (uid and gid 65534) outside the sandbox as well as inside;
  - a file system of read-only binds of /usr (and /bin, /lib* beside it) and of the interpreter's prefix, a fresh
    /dev, and one writable place, a private tmpfs at /tmp of `disk_mb` (its working directory, HOME and TMPDIR);
    no /proc, /etc, home or project tree; no network at all (a new namespace holds only a down loopback);
  - rlimits set before the program's first line: CPU seconds, address space, file size, open files and processes
    (RLIMIT_NPROC, counted in its own user namespace); no inherited descriptors (stdin carries the program and is
    then replaced by /dev/null);
  - a wall-clock deadline on the whole run, kept by this process whatever the program does with its pipes; its
    output is read as it comes and the run is stopped once `output_bytes` have arrived; at the end the sandbox's
    pid namespace is killed, so no process it started survives (--die-with-parent guards a crash of this process).
A program passes only if it exits 0 *and* the harness (sandbox_harness.py) printed this run's random token, which it
does after the last section has run: exiting early (exit(), quit(), os._exit, SystemExit, a signal) is a failure.
The in-process audit hook the harness installs (no other thread's frames, tracing, gc object lists, further audit
hooks, ctypes, hand-made code objects or new processes) is an inner layer that keeps the token out of the program's
reach; the isolation above does not depend on it.

Limitation shared with HumanEval's and MBPP's official harnesses: the tests run in the program's interpreter and
call its code, so a completion returning an object whose `__eq__` is always true, or patching a module the tests use
(builtins excepted: the tests get their own copy) or the tests' own frame, can pass `assert f(x) == y`.

Without a working bwrap, `run` raises `SandboxUnavailable` unless the caller opts out explicitly with
`Limits(require_isolation=False)` or COSPEC_ALLOW_UNISOLATED=1; the program then runs as a plain subprocess with the
same rlimits, harness and deadline but no namespaces.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence, Union

_SIGNALS = {int(s) for s in signal.Signals}
NOBODY = 65534  # The uid and gid a program runs as when this process is root.
with open(os.path.join(os.path.dirname(__file__), 'sandbox_harness.py')) as _f:
  _HARNESS = _f.read()  # Passed to `python -c` in the sandbox.


class SandboxUnavailable(RuntimeError):
  """bwrap is missing or cannot create its namespaces here, and the caller did not opt out of isolation."""


@dataclasses.dataclass(frozen=True)
class Limits:
  timeout_s: float = 10.0  # Wall clock for the whole run, sandbox start included.
  cpu_s: int = 10  # CPU seconds per process (RLIMIT_CPU).
  memory_mb: int = 1024  # Address space per process (RLIMIT_AS).
  file_mb: int = 16  # Largest file the program may write (RLIMIT_FSIZE).
  disk_mb: int = 64  # Size of its private tmpfs, the only writable place.
  processes: int = 16  # Processes and threads in its user namespace (RLIMIT_NPROC).
  open_files: int = 64  # RLIMIT_NOFILE.
  output_bytes: int = 1 << 20  # stdout and stderr together; the run is stopped and failed past this.
  require_isolation: bool = True  # False: run without bwrap where it is missing (see the module docstring).


@dataclasses.dataclass(frozen=True)
class Result:
  status: str  # 'passed' (exit 0 and the pass token), 'failed' or 'timeout'.
  returncode: Optional[int]  # The sandbox's exit status (None when it was killed by the deadline).
  stdout: str  # The last 10,000 characters, without the pass token's line.
  stderr: str  # The last 10,000 characters.
  reason: str = ''  # Why it failed: 'exit status N', 'no pass token', 'output limit', 'timeout'.

  @property
  def passed(self) -> bool:
    return self.status == 'passed'


def _traversable(path: str) -> bool:
  """True if a user who is neither owner nor group can reach and read `path` (each directory above it o+x)."""
  path = os.path.realpath(path)
  parts = path.split(os.sep)
  for i in range(2, len(parts)):
    if not os.stat(os.sep.join(parts[:i])).st_mode & stat.S_IXOTH:
      return False
  return bool(os.stat(path).st_mode & stat.S_IROTH)


@functools.lru_cache(maxsize=1)
def _interpreter() -> tuple[str, str]:
  """(python executable, prefix to bind) the sandbox runs: this interpreter's base install, or /usr/bin/python3
  when running as root and the base install is out of nobody's reach (e.g. pyenv under /root)."""
  executable = os.path.realpath(getattr(sys, '_base_executable', sys.executable))  # Not a venv's copy.
  prefix = os.path.realpath(sys.base_prefix)
  if os.geteuid() != 0 or _traversable(executable):
    return executable, prefix
  for candidate in ('/usr/bin/python3', '/usr/local/bin/python3'):
    if os.path.exists(candidate) and _traversable(candidate):
      return os.path.realpath(candidate), '/usr'
  raise SandboxUnavailable(f'{executable} cannot be read by uid {NOBODY}, the user programs run as when this process '
                           'is root, and there is no /usr/bin/python3: install python3 (apt-get install python3).')


def _bwrap_command(limits: Limits) -> list[str]:
  """The bwrap command line running the harness (see the module docstring for what each part guarantees)."""
  python, prefix = _interpreter()
  command = ['bwrap', '--unshare-all', '--unshare-user', '--die-with-parent', '--new-session', '--cap-drop', 'ALL',
             '--hostname', 'sandbox', '--clearenv', '--setenv', 'PATH', '/usr/bin:/bin', '--setenv', 'HOME', '/tmp',
             '--setenv', 'TMPDIR', '/tmp', '--setenv', 'LANG', 'C.UTF-8', '--ro-bind', '/usr', '/usr']
  for top in ('/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'):
    if os.path.islink(top):
      command += ['--symlink', os.readlink(top), top]
    elif os.path.isdir(top):
      command += ['--ro-bind', top, top]
  if prefix == '/':
    raise SandboxUnavailable(f'{python} has prefix /, which the sandbox would have to expose whole; use a Python '
                             'installed under /usr or in a directory of its own.')
  if not (prefix + '/').startswith('/usr/'):
    command += ['--ro-bind', prefix, prefix]
  command += ['--dev', '/dev', '--size', str(limits.disk_mb << 20), '--tmpfs', '/tmp', '--chdir', '/tmp',
              '--remount-ro', '/dev', '--remount-ro', '/']
  return command + ['--', python, '-I', '-S', '-B', '-c', _HARNESS]


def _popen(command: list[str], cwd: str) -> subprocess.Popen:
  """Starts `command` in a new session, as nobody when this process is root, with no inherited descriptors."""
  drop = dict(user=NOBODY, group=NOBODY, extra_groups=[]) if os.geteuid() == 0 else {}
  return subprocess.Popen(command, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          close_fds=True, pass_fds=(), start_new_session=True, env={'PATH': '/usr/bin:/bin'},
                          **drop)


@functools.lru_cache(maxsize=1)
def isolation_error() -> str:
  """'' when bwrap can run a program here, else why not and how to fix it (checked once per process)."""
  if shutil.which('bwrap') is None:
    return 'bwrap is not installed: apt-get install bubblewrap.'
  try:
    proc = _popen(_bwrap_command(Limits())[:-2] + ['-c', 'print(6 * 7)'], '/')
  except (OSError, subprocess.SubprocessError, SandboxUnavailable) as e:
    return f'bwrap could not start: {e}'
  try:
    out, err = proc.communicate(timeout=30)
  except subprocess.TimeoutExpired:
    return 'bwrap did not run a one-line program within 30 s.'
  finally:
    _kill(proc)
  if proc.returncode != 0 or out.strip() != b'42':
    return (f'bwrap fails here (exit {proc.returncode}): {err.decode(errors="replace").strip()}; it needs user '
            'namespaces for unprivileged users (sysctl user.max_user_namespaces > 0; on Debian '
            'kernel.unprivileged_userns_clone=1; on Ubuntu 24.04+ kernel.apparmor_restrict_unprivileged_userns=0).')
  return ''


def _command(limits: Limits) -> tuple[list[str], Optional[str]]:
  """(command, scratch directory to remove or None): bwrap, or the opted-out plain subprocess."""
  error = isolation_error()
  if not error:
    return _bwrap_command(limits), None
  if limits.require_isolation and os.environ.get('COSPEC_ALLOW_UNISOLATED') != '1':
    raise SandboxUnavailable(f'Refusing to run generated code without isolation: {error} To run it unisolated '
                             'anyway, set COSPEC_ALLOW_UNISOLATED=1 or Limits(require_isolation=False).')
  scratch = tempfile.mkdtemp(prefix='cospec_sandbox_')
  if os.geteuid() == 0:
    os.chown(scratch, NOBODY, NOBODY)
  return [_interpreter()[0], '-I', '-S', '-B', '-c', _HARNESS], scratch


def _rlimits(limits: Limits) -> dict[str, tuple[int, int]]:
  mb = 1 << 20
  return {'RLIMIT_CPU': (limits.cpu_s, limits.cpu_s + 1), 'RLIMIT_AS': (limits.memory_mb * mb,) * 2,
          'RLIMIT_FSIZE': (limits.file_mb * mb,) * 2, 'RLIMIT_NOFILE': (limits.open_files,) * 2,
          'RLIMIT_NPROC': (limits.processes,) * 2}


def _exchange(proc: subprocess.Popen, payload: bytes, deadline: float, cap: int) -> tuple[bytes, bytes, str]:
  """Writes `payload` to the child's stdin and reads its stdout and stderr until both close, the deadline passes or
  `cap` bytes have come; returns (stdout, stderr, '' | 'timeout' | 'output limit'). Never blocks past the deadline."""
  out, err = bytearray(), bytearray()
  buffers = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
  with selectors.DefaultSelector() as selector:
    stdin = proc.stdin.fileno()
    os.set_blocking(stdin, False)
    selector.register(stdin, selectors.EVENT_WRITE)
    for fd in buffers:
      selector.register(fd, selectors.EVENT_READ)
    sent, exited = 0, False
    while selector.get_map():
      now = time.monotonic()
      if now >= deadline:
        return bytes(out), bytes(err), '' if exited else 'timeout'
      if not exited and proc.poll() is not None:  # Whatever still holds its pipes gets half a second more.
        exited, deadline = True, min(deadline, now + 0.5)
      for key, _ in selector.select(min(deadline - now, 0.1)):
        fd = key.fd
        if fd == stdin:
          try:
            sent += os.write(fd, payload[sent:sent + 65536])
          except BlockingIOError:
            continue
          except BrokenPipeError:  # It stopped reading (it died); nothing more to send.
            sent = len(payload)
          if sent >= len(payload):
            selector.unregister(fd)
            proc.stdin.close()
          continue
        chunk = os.read(fd, 65536)
        if not chunk:
          selector.unregister(fd)
          continue
        buffers[fd].extend(chunk)
        if len(out) + len(err) > cap:
          return bytes(out), bytes(err), 'output limit'
  return bytes(out), bytes(err), ''


def _kill(proc: subprocess.Popen):
  """Kills the sandbox's process group (bwrap; its pid namespace dies with it) and reaps it."""
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except (ProcessLookupError, PermissionError):
    pass
  try:
    proc.wait(timeout=5)
  except subprocess.TimeoutExpired:
    pass
  for stream in (proc.stdin, proc.stdout, proc.stderr):
    try:
      stream.close()
    except OSError:
      pass


def run(program: Union[str, Sequence[str]], limits: Limits = Limits(), *, guard: bool = True) -> Result:
  """Runs Python source `program` (or sections executed in order in one namespace, each compiled on its own:
  completion, then tests) in the sandbox; returns how it ended. `guard=False` leaves out the inner audit hook, for
  tests that show the isolation holds without it; the pass token is then within the program's reach, so never score
  with it. Raises SandboxUnavailable when isolation is missing (see above)."""
  sections = [program] if isinstance(program, str) else list(program)
  command, scratch = _command(limits)
  token = secrets.token_hex(16)
  payload = json.dumps({'token': token, 'sections': sections, 'limits': _rlimits(limits), 'guard': guard}).encode()
  try:
    proc = _popen(command, scratch or '/')
    deadline = time.monotonic() + limits.timeout_s
    try:
      out, err, reason = _exchange(proc, payload, deadline, limits.output_bytes)
      if not reason:  # Its pipes closed: wait for its exit status (a program may close them and run on).
        try:
          proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
          reason = 'timeout'
    finally:
      _kill(proc)
  finally:
    if scratch:
      shutil.rmtree(scratch, ignore_errors=True)
  line = f'\n{token}\n'.encode()
  stdout, stderr = out.replace(line, b'').decode(errors='replace'), err.decode(errors='replace')
  returncode = None if reason == 'timeout' else proc.returncode
  if reason:
    status = 'timeout' if reason == 'timeout' else 'failed'
  elif returncode != 0:  # bwrap reports a death by signal N as 128 + N.
    killed = returncode - 128 if not scratch and returncode > 128 else -returncode
    status, reason = 'failed', (f'killed by {signal.Signals(killed).name}' if killed in _SIGNALS else
                                f'exit status {returncode}')
  elif line not in out:
    status, reason = 'failed', 'no pass token'
  else:
    status = 'passed'
  return Result(status, returncode, stdout[-10_000:], stderr[-10_000:], reason)
