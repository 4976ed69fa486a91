"""The arbiter's REINFORCE loop: it runs, logs what it should, changes the policy, and resumes exactly."""

import json
import os
import shutil
import sys

import jax
import numpy as np
import pytest

from cospec_jax.models import save_hf_checkpoint
from cospec_jax.tasks.tokenizer import CharTokenizer
from cospec_jax.train import arbiter
from tests import helpers

pytest.importorskip('tensorflow_datasets')
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs'))
import train_arbiter  # noqa: E402


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  """A tiny random pair that disagrees often (exported where the arbiter reads it) and an uninterrupted 4-step
  arbiter run with checkpoints at 2 and 4."""
  root = tmp_path_factory.mktemp('arbiter')
  tc, tp, dc, dp = helpers.tiny_pair(CharTokenizer().vocab_size, noise=0.15)
  for name, c, p in (('target', tc, tp), ('draft', dc, dp)):
    save_hf_checkpoint(str(root / name / 'hf'), c, p)
  config = train_arbiter.get_config('smoke')
  config.data.data_dir = str(root / 'tfds')
  config.pair.target_workdir = str(root / 'target')
  config.pair.draft_workdir = str(root / 'draft')
  arbiter.train_arbiter(config, str(root / 'full'))
  return config, root


def _metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_metrics_per_step(setup):
  config, root = setup
  metrics = _metrics(root / 'full')
  assert [m['step'] for m in metrics] == [1, 2, 3, 4]
  for key in ('reward', 'accuracy', 'draft_kept_at_mismatch', 'tokens_per_target_call', 'policy_entropy',
              'grad_norm'):
    assert all(np.isfinite(m[key]) for m in metrics), key
  assert all(1.0 <= m['tokens_per_target_call'] <= config.rl.gamma + 1 for m in metrics)
  assert all(m['decisions'] > 0 for m in metrics)  # The pair disagrees, so the arbiter decided.
  state = arbiter.restore_state(config, str(root / 'full'))
  assert int(state.step) == 4
  target, draft = arbiter.load_pair(config)
  initial = arbiter.initial_state(config, target, draft)
  assert not np.allclose(state.params['Dense_0']['kernel'], initial.params['Dense_0']['kernel'])


def test_resume_equals_uninterrupted(setup, tmp_path):
  config, root = setup
  killed = tmp_path / 'killed'
  shutil.copytree(root / 'full' / 'checkpoints', killed / 'checkpoints')
  shutil.rmtree(killed / 'checkpoints' / '4')
  with open(killed / 'metrics.jsonl', 'w') as f:  # Killed after logging step 3, past its last checkpoint (2).
    f.writelines(json.dumps(m) + '\n' for m in _metrics(root / 'full')[:3])
  arbiter.train_arbiter(config, str(killed))
  jax.tree_util.tree_map(np.testing.assert_array_equal, arbiter.restore_state(config, str(killed)),
                         arbiter.restore_state(config, str(root / 'full')))
  assert [m['step'] for m in _metrics(killed)] == [1, 2, 3, 4]
  np.testing.assert_allclose([m['reward'] for m in _metrics(killed)], [m['reward'] for m in _metrics(root / 'full')])
