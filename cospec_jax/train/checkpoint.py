"""Orbax checkpoints of a training state: save every N steps, keep the last k, restore exactly, fail clearly.

Orbax writes each step into a temporary directory and renames it when complete, so an interrupted save never
becomes the latest step. A checkpoint that is present but unreadable raises CheckpointCorruptError naming the step,
the steps that remain and the exact flag that restores an older one (the caller passes the flag as the user's
command spells it, e.g. --config.target.train.restore_step for the pipeline). Restoring an older step moves the newer
ones aside when training resumes from it (`resume=True`), into <directory>.set_aside/<step>.<UTC time> (renamed and
reported, never deleted), so the run continues and its new saves are not shadowed by a damaged step;
`restore_newest_good` does the same unattended.
"""

from __future__ import annotations

import os
import time
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils


class CheckpointCorruptError(RuntimeError):
  """A checkpoint step exists but cannot be restored."""


class Checkpointer:
  """A thin, explicit wrapper around ocp.CheckpointManager for one pytree."""

  def __init__(self, directory: str, save_every: int, keep: int, restore_flag: str = '--config.train.restore_step'):
    """`restore_flag`: the command-line flag that sets the step to restore, as the user's command spells it; the
    corrupt-checkpoint error names it."""
    self.directory = os.path.abspath(directory)
    self.set_aside_directory = self.directory + '.set_aside'
    self.restore_flag = restore_flag
    self.save_every = save_every
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, force: bool = False) -> bool:
    """Saves if `step` is a multiple of `save_every` (or `force`) and not saved yet; returns whether it saved."""
    if not (force or step % self.save_every == 0):
      return False  # Checked first: this runs every training step, the directory listing below only on saves.
    if step in self._manager.all_steps():
      return False
    return self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def restore(self, abstract_state: Any, step: Optional[int] = None, resume: bool = False) -> tuple[int, Any]:
    """Restores `step` (default: the latest) into the structure of `abstract_state`; returns (step, state).
    `resume=True` says training continues from it: the steps newer than `step` are then moved aside (`set_aside`),
    so the new saves replace them. A step that does not restore raises CheckpointCorruptError naming `restore_flag`
    and the older steps, and moves nothing."""
    steps = self.steps()
    if step is None:
      if not steps:
        raise FileNotFoundError(f'No checkpoint in {self.directory}.')
      step = steps[-1]
    if step not in steps:
      raise FileNotFoundError(f'No checkpoint for step {step} in {self.directory}; available: {steps} '
                              f'(set {self.restore_flag} to one of them, or -1 for the latest).')
    state = self._restore_or_raise(abstract_state, step, steps)
    if resume:
      self.set_aside([s for s in steps if s > step])
    return step, state

  def restore_newest_good(self, abstract_state: Any) -> tuple[int, Any, list[str]]:
    """Restores the newest step that restores, moving each newer one that does not aside; returns (step, state,
    paths the damaged steps were moved to). Raises FileNotFoundError when there is no checkpoint and
    CheckpointCorruptError when none restores (then nothing is moved)."""
    steps = self.steps()
    if not steps:
      raise FileNotFoundError(f'No checkpoint in {self.directory}.')
    for i in range(len(steps) - 1, -1, -1):
      try:
        state = self._restore_or_raise(abstract_state, steps[i], steps)
      except CheckpointCorruptError as e:
        print(f'checkpoint: {e}')
        continue
      return steps[i], state, self.set_aside(steps[i + 1:])
    raise CheckpointCorruptError(f'No checkpoint in {self.directory} restores (steps {steps}); move the directory '
                                 'aside to start over.')

  def _restore_or_raise(self, abstract_state: Any, step: int, steps: list[int]) -> Any:
    try:
      return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
    except Exception as e:  # Orbax raises many kinds for a damaged step; all mean the same to the user.
      older = [s for s in steps if s < step]
      hint = (f'restore an older one with {self.restore_flag}={older[-1]} (available: {older}); the newer steps '
              f'are then moved to {self.set_aside_directory}, not deleted' if older else
              f'no older checkpoint remains; move {self.directory} aside to start over')
      raise CheckpointCorruptError(
          f'Checkpoint step {step} in {self.directory} is corrupt or incomplete ({type(e).__name__}: '
          f'{str(e)[:200]}); {hint}.') from e

  def set_aside(self, steps: list[int]) -> list[str]:
    """Moves each of `steps` out of the directory into <directory>.set_aside/<step>.<UTC time> (process 0 moves,
    every process then sees the change), printing where; returns the new paths."""
    if not steps:
      return []
    stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())
    moved = [os.path.join(self.set_aside_directory, f'{step}.{stamp}') for step in steps]
    if jax.process_index() == 0:
      os.makedirs(self.set_aside_directory, exist_ok=True)
      for step, path in zip(steps, moved):
        os.rename(os.path.join(self.directory, str(step)), path)
        print(f'checkpoint: moved step {step} aside to {path} (newer than the step restored; not deleted)')
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'checkpoint set aside {stamp}')
    self._manager.reload()
    return moved

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()


def abstract(tree: Any) -> Any:
  """ShapeDtypeStructs of `tree`, the form restore wants."""
  return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)


def restore_once(directory: str, abstract_state: Any, step: Optional[int] = None,
                 restore_flag: str = '--config.train.restore_step') -> Any:
  """Opens `directory`, restores `step` (default: the latest) into `abstract_state`'s structure, closes it; moves
  nothing. Leaves that name no sharding land on this process's first device, whatever mesh the checkpoint was saved
  from. `restore_flag`: as for Checkpointer, the flag a damaged step's error names."""
  local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract_state = jax.tree_util.tree_map(
      lambda x: x if getattr(x, 'sharding', None) is not None else jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                                                        sharding=local),
      abstract_state)
  checkpointer = Checkpointer(directory, save_every=1, keep=1, restore_flag=restore_flag)
  try:
    return checkpointer.restore(abstract_state, step)[1]
  finally:
    checkpointer.close()
