"""Training one model in a second process while this one trains another: the draft beside the target, on a CPU.

A training step of the embedded models is many small operations (the target's largest product is 4096 x 128 by 128
x 384), most waiting on the one before, so one process gets little from a second core: on this round's 2-core
machine (2026-12-04) the target's step took 0.67 s on both cores and 0.94 s pinned to one, the draft's 0.37 s and
0.50 s. Beside each other, each ran at about its one-core speed (1.01 s and 0.51 s), so the pair trains in less
time than one model after the other (the README gives the two stages' measured time). Each process computes exactly
what it would alone, so the pair is the same to the bit (tests/main_test.py holds it).

  with beside.Training(config.draft, workdir, '--config.draft', off_flag='--config.train_pair_concurrently'):
    trainer.train(config.target, ...)

Only where it helps and is safe: one process on a CPU (`available()`); an accelerator belongs to one process.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time

import jax
import ml_collections
import tqdm

from cospec_jax.train import trainer


def available() -> bool:
  """Whether a second training process can share this machine: one JAX process, on a CPU."""
  return jax.default_backend() == 'cpu' and jax.process_count() == 1


def wanted(enabled: bool, models_to_train: int) -> bool:
  """Whether to train a pair side by side: asked for (`enabled`), both models still to train, and `available()`."""
  return enabled and models_to_train == 2 and available()


def _end_with_parent(parent_pid: int) -> None:
  """On Linux, the kernel stops this process if the one that started it dies, even by SIGKILL: a rerun never finds
  an orphan still training in the same workdir."""
  if sys.platform.startswith('linux'):
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG.
  if os.getppid() != parent_pid:  # It died before the line above.
    os._exit(1)


def _train(config: ml_collections.ConfigDict, workdir: str, config_flag: str, log_path: str, seconds,
           parent_pid: int) -> None:
  _end_with_parent(parent_pid)
  with open(log_path, 'a') as log:
    os.dup2(log.fileno(), 1)  # Python's output and XLA's alike.
    os.dup2(log.fileno(), 2)
    t0 = time.time()
    trainer.train(config, workdir, config_flag)
    seconds.value = time.time() - t0


class Training:
  """A context: `config`'s model trains in a second process (its output in <workdir>/train.log) while the block
  runs; its data set (config.data) is built first, in this process. Leaving the block waits for it and raises, naming its log, if it failed; if the block itself fails, the
  second process is stopped (its run resumes from its checkpoints). `seconds`: its wall time, once done."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, config_flag: str, off_flag: str):
    self.config, self.workdir, self.config_flag, self.off_flag = config, workdir, config_flag, off_flag
    self.log_path = os.path.join(workdir, 'train.log')
    self.seconds = None

  def __enter__(self) -> Training:
    os.makedirs(self.workdir, exist_ok=True)
    # The data set is written here, before the second process starts: it and this one both read it, never both
    # building it at once.
    trainer.build_task(self.config.data, self.workdir)
    context = multiprocessing.get_context('spawn')  # A fresh JAX runtime, not a fork of this one's threads.
    self._seconds = context.Value('d', -1.0)
    self._process = context.Process(
        target=_train, args=(self.config, self.workdir, self.config_flag, self.log_path, self._seconds, os.getpid()),
        name=f'train {self.config.name}', daemon=True)  # Stopped if this process exits, or dies (_end_with_parent).
    self._process.start()
    # A failure is said when it happens, not only when the block ends (the target may train for many minutes more).
    self._stopping = False
    self._watcher = threading.Thread(target=self._say_if_failed, daemon=True)
    self._watcher.start()
    return self

  def _say_if_failed(self) -> None:
    multiprocessing.connection.wait([self._process.sentinel])  # Waits without reaping it (the block's end does).
    if self._seconds.value < 0 and not self._stopping:
      tqdm.tqdm.write(f'[beside] training the {self.config.name} in its second process failed (its output: '
                      f'{self.log_path}); the training here goes on, then stops with the error.')

  def __exit__(self, error_type, error, traceback) -> None:
    if error_type is not None:
      self._stopping = True
      self._process.terminate()
      self._process.join()
      return
    self._process.join()
    self._watcher.join()
    if self._process.exitcode != 0 or self._seconds.value < 0:
      raise RuntimeError(
          f'Training the {self.config.name} in a second process failed (exit code {self._process.exitcode}); its '
          f'output is in {self.log_path}. Run the command again to resume it, or add {self.off_flag}=False to train '
          'it in this process and see the error here.')
    self.seconds = self._seconds.value
