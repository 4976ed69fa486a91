"""The trainer: loss goes down, resume after a kill equals an uninterrupted run, a corrupt checkpoint is named with
the flag of the command that ran, and restoring an older step continues the run to the uninterrupted result."""

import json
import os
import shutil
import sys

import jax
import numpy as np
import pytest

from cospec_jax.train import checkpoint as checkpoint_lib
from cospec_jax.train import trainer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs'))
import train_target  # noqa: E402


def _smoke(**train):
  config = train_target.get_config('smoke')
  config.train.update(train)
  config.eval.num_examples = 4
  config.eval.batch_size = 4
  config.eval.max_new_tokens = 8
  return config


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  """20 steps, checkpoints at 10 and 20; shares its built data set with the other runs."""
  workdir = tmp_path_factory.mktemp('uninterrupted')
  config = _smoke(steps=20, save_every=10)
  config.data.data_dir = str(tmp_path_factory.mktemp('tfds'))
  result = trainer.train(config, str(workdir))
  return config, workdir, result


def _metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_loss_goes_down(uninterrupted):
  _, workdir, result = uninterrupted
  losses = [m['loss'] for m in _metrics(workdir)]
  assert losses[-1] < losses[0] - 0.3, losses
  assert result['step'] == 20
  assert os.path.exists(os.path.join(workdir, 'hf', 'model.safetensors'))
  evaluation = json.load(open(os.path.join(workdir, 'eval.json')))
  per_problem = evaluation['per_problem']  # Counted independently of the summary fields below.
  assert len(per_problem) == evaluation['validation_total'] == 4 and all(isinstance(c, bool) for c in per_problem)
  assert evaluation['validation_correct'] == sum(per_problem) == result['validation_correct']
  assert evaluation['validation_accuracy'] == result['validation_accuracy'] == sum(per_problem) / 4


def test_resume_after_kill_equals_uninterrupted(uninterrupted, tmp_path):
  """A run killed after its step-10 checkpoint (and mid-way through writing step 20) resumes to the same state."""
  config, workdir, _ = uninterrupted
  killed = tmp_path / 'killed'
  shutil.copytree(workdir / 'checkpoints', killed / 'checkpoints')
  shutil.rmtree(killed / 'checkpoints' / '20')
  # What a kill during a save leaves: orbax's temporary directory, never a finished step.
  os.makedirs(killed / 'checkpoints' / '20.orbax-checkpoint-tmp-1234' / 'state')
  with open(killed / 'metrics.jsonl', 'w') as f:  # Metrics logged past the checkpoint before the kill.
    f.writelines(json.dumps(m) + '\n' for m in _metrics(workdir)[:3])
  resumed = trainer.train(config, str(killed))
  assert resumed['step'] == 20
  _, expected = trainer.restore_params(str(workdir), config)
  _, got = trainer.restore_params(str(killed), config)
  jax.tree_util.tree_map(np.testing.assert_array_equal, got, expected)
  assert [m['step'] for m in _metrics(killed)] == [m['step'] for m in _metrics(workdir)]  # Written once each.
  np.testing.assert_allclose([m['loss'] for m in _metrics(killed)], [m['loss'] for m in _metrics(workdir)])


def test_different_run_differs(uninterrupted, tmp_path):
  """The resume comparison can fail: another seed gives other parameters."""
  config, workdir, _ = uninterrupted
  other = _smoke(steps=20, save_every=10)
  other.data.data_dir = config.data.data_dir
  other.seed = config.seed + 1
  trainer.train(other, str(tmp_path / 'other'))
  _, a = trainer.restore_params(str(workdir), config)
  _, b = trainer.restore_params(str(tmp_path / 'other'), other)
  assert not np.allclose(a['embed_tokens']['embedding'], b['embed_tokens']['embedding'])


def test_corrupt_latest_checkpoint_is_named_and_older_restores(uninterrupted, tmp_path):
  config, workdir, _ = uninterrupted
  damaged = tmp_path / 'damaged'
  shutil.copytree(workdir / 'checkpoints', damaged / 'checkpoints')
  for root, _, files in os.walk(damaged / 'checkpoints' / '20'):
    for name in files:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'\0garbage')
  with pytest.raises(checkpoint_lib.CheckpointCorruptError, match=r'step 20 .* --config.train.restore_step=10'):
    trainer.restore_params(str(damaged), config)
  _, older = trainer.restore_params(str(damaged), config, step=10)
  _, expected = trainer.restore_params(str(workdir), config, step=10)
  jax.tree_util.tree_map(np.testing.assert_array_equal, older, expected)
  # Inside the pipeline the hint names the pipeline's flag; that flag set, the run goes on from step 10 to the
  # uninterrupted run's parameters, and the damaged step 20 is kept aside.
  with pytest.raises(checkpoint_lib.CheckpointCorruptError, match=r'--config\.target\.train\.restore_step=10 '):
    trainer.train(config, str(damaged), config_flag='--config.target')
  resumed = trainer.train(_with_restore_step(config, 10), str(damaged), config_flag='--config.target')
  assert resumed['step'] == 20
  _, got = trainer.restore_params(str(damaged), config)
  _, expected = trainer.restore_params(str(workdir), config)
  jax.tree_util.tree_map(np.testing.assert_array_equal, got, expected)
  (aside,) = os.listdir(damaged / 'checkpoints.set_aside')
  assert aside.startswith('20.') and open(next(
      os.path.join(r, n) for r, _, ns in os.walk(damaged / 'checkpoints.set_aside' / aside) for n in ns), 'rb'
  ).read() == b'\0garbage'


def _with_restore_step(config, step):
  config = config.copy_and_resolve_references()
  config.train.restore_step = step
  return config


def test_bad_schedule_is_named():
  with pytest.raises(ValueError, match='warmup_steps=30'):
    trainer.make_schedule(_smoke(steps=20, warmup_steps=30).train)


def test_batches_cut_to_their_longest_keep_the_examples_and_the_loss():
  """config.train.width_multiple: the batch holds the same examples, cut to a multiple of the width that still holds
  the longest; the columns cut are padding only, and the loss is the full-width batch's."""
  from cospec_jax.models import config as config_lib
  from cospec_jax.tasks.tokenizer import CharTokenizer
  from cospec_jax.train import data as data_lib
  tokenizer = CharTokenizer()
  questions = ['From 3: +4.', 'From 18: *3, *2, -19.', 'From 7: -1, +12.'] * 4
  solutions = ['3+4=7\n#### 7', 'then 18 times 3=54\nso 54 times 2=108\nnow 108-19 is 89.\n#### 89',
               '7-1=6\n#### 6'] * 4
  examples = data_lib.encode_examples(tokenizer, questions, solutions, 128)
  full = data_lib.batch_at(examples, 3, 5, seed=0)
  cut = data_lib.batch_at(examples, 3, 5, seed=0, width_multiple=8)
  width = cut['inputs'].shape[1]
  longest = int((full['inputs'] != tokenizer.pad_id).sum(axis=1).max())  # Inputs are padded at the end only.
  assert width % 8 == 0 and longest <= width < longest + 8, (width, longest)
  for key in full:
    np.testing.assert_array_equal(cut[key], full[key][:, :width])
  assert not full['mask'][:, width:].any() and (full['inputs'][:, width:] == tokenizer.pad_id).all()
  model = config_lib.from_dict(_smoke().model.to_dict())
  params = trainer.init_state(model, trainer.make_optimizer(_smoke().train), 0).params
  loss_full, acc_full = trainer.loss_fn(params, model, full)
  loss_cut, acc_cut = trainer.loss_fn(params, model, cut)
  np.testing.assert_allclose(float(loss_cut), float(loss_full), rtol=1e-5)
  np.testing.assert_allclose(float(acc_cut), float(acc_full), rtol=1e-6)
