"""Orbax checkpoints of a training state: save every N steps, keep the last k, restore exactly, fail clearly.

Orbax writes each step into a temporary directory and renames it when complete, so an interrupted save never
becomes the latest step. A checkpoint that is present but unreadable raises CheckpointCorruptError naming the step
and the steps that remain, so an older one can be restored (`restore_step`).
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp


class CheckpointCorruptError(RuntimeError):
  """A checkpoint step exists but cannot be restored."""


class Checkpointer:
  """A thin, explicit wrapper around ocp.CheckpointManager for one pytree."""

  def __init__(self, directory: str, save_every: int, keep: int):
    self.directory = os.path.abspath(directory)
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

  def restore(self, abstract_state: Any, step: Optional[int] = None) -> tuple[int, Any]:
    """Restores `step` (default: the latest) into the structure of `abstract_state`; returns (step, state)."""
    steps = self.steps()
    if step is None:
      if not steps:
        raise FileNotFoundError(f'No checkpoint in {self.directory}.')
      step = steps[-1]
    if step not in steps:
      raise FileNotFoundError(f'No checkpoint for step {step} in {self.directory}; available: {steps}.')
    try:
      state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
    except Exception as e:  # Orbax raises many kinds for a damaged step; all mean the same to the user.
      older = [s for s in steps if s < step]
      hint = (f'restore an older one with --config.train.restore_step={older[-1]} (available: {older})'
              if older else 'no older checkpoint remains; delete the directory to start over')
      raise CheckpointCorruptError(
          f'Checkpoint step {step} in {self.directory} is corrupt or incomplete ({type(e).__name__}: '
          f'{str(e)[:200]}); {hint}.') from e
    return step, state

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()


def abstract(tree: Any) -> Any:
  """ShapeDtypeStructs of `tree`, the form restore wants."""
  return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)


def restore_once(directory: str, abstract_state: Any, step: Optional[int] = None) -> Any:
  """Opens `directory`, restores `step` (default: the latest) into `abstract_state`'s structure, closes it. Leaves
  that name no sharding land on this process's first device, whatever mesh the checkpoint was saved from."""
  local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract_state = jax.tree_util.tree_map(
      lambda x: x if getattr(x, 'sharding', None) is not None else jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                                                        sharding=local),
      abstract_state)
  checkpointer = Checkpointer(directory, save_every=1, keep=1)
  try:
    return checkpointer.restore(abstract_state, step)[1]
  finally:
    checkpointer.close()
