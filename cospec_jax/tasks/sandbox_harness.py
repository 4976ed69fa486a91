"""The program that runs inside the sandbox around the code being scored. Never imported by the parent: `sandbox.py`
passes this file's text to `python -I -S -B -c`.

It reads one JSON object from stdin ({'token', 'sections', 'limits', 'guard'}), puts /dev/null in stdin's place,
sets the rlimits (the kernel enforces them from then on) and runs the sections in order in a `__main__`
namespace, each compiled on its own (a completion cannot swallow the tests after it with an open string or bracket)
and with `builtins` restored before each. The sections after the first (the tests) run in a copy of the first's
namespace without the globals that shadow a builtin and with a private copy of the builtins, so a completion that
defines or patches `abs`, `len` or `isinstance` (at its top level or when the tests call it) does not change what
the asserts see.

The pass token. The main thread never holds it: a notary thread does, in its own frame, and prints it only when it
sees the main thread blocked on the last line of `_main`, in the very frame that ran the sections (checked by frame
identity and line number, neither of which the program can forge). A program that exits early (exit(), quit(),
os._exit, SystemExit, a signal, a crash) never gets there, so the parent, which counts a pass only when it reads the
token, fails it. The inner guard (an audit hook, `guard=True`) keeps the notary's frame out of reach: it refuses
sys._current_frames (but to the notary), tracing and profiling, gc's object lists, further audit hooks, ctypes,
hand-made code objects (crafted bytecode can read memory) and new processes; /proc is not mounted in the sandbox,
so memory cannot be read through it either.
"""

import _sitebuiltins
import _thread
import builtins
import json
import os
import resource
import sys
import types


def _install_guard(notary: int):
  """Adds an audit hook (which cannot be removed) refusing what would reach the notary's frame or leave the
  process; `notary` is the notary thread's ident, the one thread allowed sys._current_frames."""
  get_ident = _thread.get_ident

  def hook(event, args):
    if event == 'sys._current_frames':
      if get_ident() != notary:
        raise PermissionError('sandbox: sys._current_frames is refused')
    elif event == 'sys.addaudithook':
      raise RuntimeError('sandbox: further audit hooks are refused')  # A RuntimeError refuses it silently.
    elif event == 'import':
      if str(args[0]).partition('.')[0] in ('ctypes', '_ctypes', '_testcapi', '_testinternalcapi'):
        raise PermissionError(f'sandbox: importing {args[0]} is refused')
    elif event.startswith(('sys.settrace', 'sys.setprofile', 'sys._settraceallthreads', 'sys._setprofileallthreads',
                           'sys.monitoring', 'sys.remote_exec', 'gc.get_', 'ctypes.', 'code.__new__', 'os.fork',
                           'os.forkpty', 'os.system', 'os.exec', 'os.posix_spawn', 'os.spawn', 'subprocess.Popen',
                           'pty.spawn')):
      raise PermissionError(f'sandbox: {event} is refused')

  sys.addaudithook(hook)


def _notary(token, main, main_code, ready, gate, current_frames, write, leave):
  """Holds `token`; writes it and ends the process once the main thread (ident `main`) sits on the last line of the
  frame running `main_code` that it was in when this thread started. Every call here is to a built-in captured
  before the program ran, so no code of the program runs in this thread."""
  try:
    frame = current_frames()[main]
    last_line = max(line for _, _, line in main_code.co_lines() if line is not None)
    ready.release()
    while True:
      gate.acquire()  # Released by _main's last line (or by the program, which only makes this look again).
      if current_frames().get(main) is frame and frame.f_lineno == last_line:
        write(1, b'\n' + token + b'\n')
        leave(0)
  except BaseException:  # Nothing escapes this thread: an exception's traceback would lead to this frame.
    leave(70)


def _main():
  payload = json.loads(sys.stdin.buffer.read())
  null = os.open(os.devnull, os.O_RDONLY)
  os.dup2(null, 0)
  os.close(null)
  ready, gate, finished = _thread.allocate_lock(), _thread.allocate_lock(), _thread.allocate_lock()
  for lock in (ready, gate, finished):
    lock.acquire()
  notary = _thread.start_new_thread(_notary, (payload.pop('token').encode(), _thread.get_ident(), _main.__code__,
                                              ready, gate, sys._current_frames, os.write, os._exit))
  ready.acquire()  # The notary has seen this frame.
  # After the notary started: unisolated, RLIMIT_NPROC counts all of this user's processes and could refuse it.
  for name, (soft, hard) in payload['limits'].items():
    resource.setrlimit(getattr(resource, name), (soft, hard))
  builtins.exit = _sitebuiltins.Quitter('exit', 'Ctrl-D (i.e. EOF)')  # What `site` adds; python -S leaves it out.
  builtins.quit = _sitebuiltins.Quitter('quit', 'Ctrl-D (i.e. EOF)')
  builtins_before = types.MappingProxyType(dict(builtins.__dict__))
  run, restore = exec, builtins.__dict__.update
  codes = tuple(compile(source, 'program.py', 'exec', dont_inherit=True) for source in payload['sections'])
  if payload['guard']:
    _install_guard(notary)
  del payload
  module = types.ModuleType('__main__')
  sys.modules['__main__'] = module
  namespace = module.__dict__
  namespace['__builtins__'] = builtins
  for index, code in enumerate(codes):
    for name in [k for k in builtins.__dict__ if k not in builtins_before]:
      del builtins.__dict__[name]
    restore(builtins_before)
    if index == 1:  # The tests: the program's names but those shadowing a builtin, and builtins of their own.
      namespace = {k: v for k, v in namespace.items() if k not in builtins_before or k.startswith('__')}
      namespace['__builtins__'] = dict(builtins_before)
    run(code, namespace)
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except Exception:  # The program may have closed or replaced its streams; the token goes to fd 1 regardless.
      pass
  gate.release(); finished.acquire()  # noqa: E702  The last line: the notary prints the token and ends the process.


_main()
