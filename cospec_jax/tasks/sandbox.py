"""Running generated code: a fresh subprocess per program, never `exec` in this process.

Each program runs as `python -I program.py` in a fresh temporary directory (removed afterwards) and a new process
group (killed whole at the end, so nothing it started outlives it), under:
  - a wall-clock timeout, and rlimits on CPU seconds, address space (memory) and written file size;
  - a guard installed before the program's first line: a Python audit hook (which the program cannot remove) that
    refuses to open files for writing outside the directory, to connect or bind sockets, to start processes or
    fork, and to load native libraries through ctypes;
  - no network where the OS allows an unprivileged network namespace (`unshare -rn`), on top of the guard.
This is the isolation code-generation benchmarks use (HumanEval's own harness guards in-process); it stops
mistakes and runaway programs, not a determined attacker: run untrusted models' code in a VM as well.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Optional

_GUARD = r'''
import os, sys
_ROOT = os.path.realpath(os.getcwd())
_BLOCKED = ('socket.connect', 'socket.bind', 'socket.sendto', 'subprocess.Popen', 'os.fork', 'os.forkpty',
            'os.system', 'os.exec', 'os.posix_spawn', 'os.spawn', 'pty.spawn', 'ctypes.dlopen', 'os.kill')

def _guard(event, args):
    if event == 'open':
        path, mode = args[0], args[1]
        writing = isinstance(mode, str) and any(c in mode for c in 'wax+')
        if isinstance(args[2], int):
            writing = writing or bool(args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND))
        if writing and isinstance(path, (str, bytes)):
            real = os.path.realpath(os.fsdecode(path))
            if not (real == _ROOT or real.startswith(_ROOT + os.sep)):
                raise PermissionError(f'sandbox: writing outside the working directory is refused: {real}')
    elif event.startswith(_BLOCKED) or event in ('os.remove', 'os.rmdir', 'shutil.rmtree') and not \
            os.path.realpath(os.fsdecode(args[0])).startswith(_ROOT + os.sep):
        raise PermissionError(f'sandbox: {event} is refused')

sys.addaudithook(_guard)
del _guard
'''


@dataclasses.dataclass(frozen=True)
class Limits:
  timeout_s: float = 10.0  # Wall clock.
  cpu_s: int = 10  # CPU seconds (RLIMIT_CPU).
  memory_mb: int = 1024  # Address space (RLIMIT_AS).
  file_mb: int = 16  # Largest file the program may write (RLIMIT_FSIZE).


@dataclasses.dataclass(frozen=True)
class Result:
  status: str  # 'passed' (exit 0), 'failed' (non-zero exit or killed by a limit), or 'timeout'.
  returncode: Optional[int]
  stdout: str
  stderr: str

  @property
  def passed(self) -> bool:
    return self.status == 'passed'


@functools.lru_cache(maxsize=1)
def _no_network_prefix() -> tuple[str, ...]:
  """('unshare', '-rn') when this OS lets an unprivileged process take a network namespace, else ()."""
  unshare = shutil.which('unshare')
  if unshare is None:
    return ()
  try:
    ok = subprocess.run([unshare, '-rn', 'true'], capture_output=True, timeout=10).returncode == 0
  except (OSError, subprocess.SubprocessError):
    ok = False
  return (unshare, '-rn') if ok else ()


def _set_limits(limits: Limits):
  def apply():
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mb, limits.file_mb * mb))
  return apply


def run(program: str, limits: Limits = Limits()) -> Result:
  """Runs Python source `program` in the sandbox and reports how it ended."""
  workdir = tempfile.mkdtemp(prefix='cospec_sandbox_')
  try:
    with open(os.path.join(workdir, 'program.py'), 'w') as f:
      f.write(_GUARD + '\n' + program)
    command = [*_no_network_prefix(), sys.executable, '-I', '-B', 'program.py']
    proc = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_set_limits(limits), env={'PATH': '/usr/bin:/bin', 'HOME': workdir})
    try:
      stdout, stderr = proc.communicate(timeout=limits.timeout_s)
      status = 'passed' if proc.returncode == 0 else 'failed'
    except subprocess.TimeoutExpired:
      status = 'timeout'
      stdout, stderr = '', ''
    finally:
      try:
        os.killpg(proc.pid, signal.SIGKILL)  # The whole group: anything the program started dies with it.
      except ProcessLookupError:
        pass
      if status == 'timeout':
        stdout, stderr = proc.communicate()
    return Result(status, proc.returncode, stdout[-10_000:], stderr[-10_000:])
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
