"""Checkpoints: a damaged step's error names the flag the caller gave; restoring an older step, or the newest good
one, moves the newer steps aside (renamed, never deleted) so that training continues and saves again."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from cospec_jax.train import checkpoint as checkpoint_lib


def _state(step):
  return {'w': jnp.full((3,), float(step)), 'step': jnp.asarray(step)}


def _damage(directory, step):
  for root, _, names in os.walk(os.path.join(directory, str(step))):
    for name in names:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'\0garbage')


@pytest.fixture
def saved(tmp_path):
  """Steps 1, 2, 3 saved; returns (directory, checkpointer)."""
  directory = str(tmp_path / 'checkpoints')
  checkpointer = checkpoint_lib.Checkpointer(directory, save_every=1, keep=5, restore_flag='--config.arbiter.rl.x')
  for step in (1, 2, 3):
    checkpointer.save(step, _state(step))
  checkpointer.wait()
  yield directory, checkpointer
  checkpointer.close()


def test_a_damaged_step_names_the_callers_flag_and_moves_nothing(saved):
  directory, checkpointer = saved
  _damage(directory, 3)
  with pytest.raises(checkpoint_lib.CheckpointCorruptError, match=r'step 3 .*--config\.arbiter\.rl\.x=2 '
                                                                 r'\(available: \[1, 2\]\)'):
    checkpointer.restore(checkpoint_lib.abstract(_state(0)))
  assert checkpointer.steps() == [1, 2, 3] and not os.path.exists(directory + '.set_aside')


def test_restoring_an_older_step_moves_the_newer_ones_aside_and_training_goes_on(saved, capsys):
  directory, checkpointer = saved
  _damage(directory, 3)
  step, state = checkpointer.restore(checkpoint_lib.abstract(_state(0)), step=1)  # Reading only: nothing moves.
  assert step == 1 and float(state['w'][0]) == 1.0 and checkpointer.steps() == [1, 2, 3]
  step, state = checkpointer.restore(checkpoint_lib.abstract(_state(0)), step=1, resume=True)
  assert step == 1 and float(state['w'][0]) == 1.0
  assert checkpointer.steps() == [1]
  aside = sorted(os.listdir(directory + '.set_aside'))
  assert [name.split('.')[0] for name in aside] == ['2', '3']
  out = capsys.readouterr().out
  assert all(os.path.join(directory + '.set_aside', name) in out for name in aside), out
  assert checkpointer.save(2, _state(20)) and checkpointer.save(3, _state(30))  # Not shadowed by the old ones.
  checkpointer.wait()
  step, state = checkpointer.restore(checkpoint_lib.abstract(_state(0)))
  assert step == 3 and float(state['w'][0]) == 30.0


def test_restore_newest_good_skips_and_moves_only_damaged_newer_steps(saved):
  directory, checkpointer = saved
  _damage(directory, 3)
  step, state, moved = checkpointer.restore_newest_good(checkpoint_lib.abstract(_state(0)))
  assert step == 2 and np.asarray(state['w']).tolist() == [2.0] * 3
  assert checkpointer.steps() == [1, 2] and [os.path.basename(p).split('.')[0] for p in moved] == ['3']
  assert all(os.path.isdir(p) for p in moved)
  for s in (1, 2):
    _damage(directory, s)
  with pytest.raises(checkpoint_lib.CheckpointCorruptError, match=r'No checkpoint .* restores \(steps \[1, 2\]\)'):
    checkpointer.restore_newest_good(checkpoint_lib.abstract(_state(0)))
  assert checkpointer.steps() == [1, 2]  # Nothing more was moved.


def test_a_missing_step_names_the_flag(saved):
  _, checkpointer = saved
  with pytest.raises(FileNotFoundError, match=r'step 7 .*available: \[1, 2, 3\].*--config\.arbiter\.rl\.x'):
    checkpointer.restore(checkpoint_lib.abstract(_state(0)), step=7)


def test_a_step_asked_of_an_empty_directory_names_the_flag(tmp_path):
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path / 'none'), 1, 1, restore_flag='--config.target.train.x')
  with pytest.raises(FileNotFoundError, match=r'step 5 .*available: \[\].*--config\.target\.train\.x'):
    checkpointer.restore(checkpoint_lib.abstract(_state(0)), step=5, resume=True)
  checkpointer.close()
