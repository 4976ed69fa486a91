"""The whole embedded experiment in order: draft, target, arbiter, table, trace. Each stage lives in
<workdir>/<stage>.

A stage whose done marker exists is skipped (a trained model's eval.json, the arbiter's done.json, the table's
results.json, the trace's trace.html; each written last, atomically, after the stage's other outputs), so re-running
the command after an interruption resumes where it stopped, and a stage that fails leaves the finished stages'
outputs untouched; a marker that does not load reruns its stage, and a lost table.md or pareto.png is redrawn from
results.json. Stages that train resume from their own checkpoints; a damaged one is named with the flag that
restores an older step (e.g. --config.arbiter.rl.restore_step). A pretrained pair (configs/paper.py) skips
the first two. The trace shows CoSpec at the checkpoint and lam the table chose on validation. The pair is read
from its checkpoints once, by the first stage after training that needs it, and shared by the later ones.
"""

from __future__ import annotations

import functools
import json
import os
import time

import ml_collections

from cospec_jax import evaluate, files, report, sharding, trace
from cospec_jax.models import CheckpointError, read_hf_config
from cospec_jax.train import arbiter, beside, trainer


def _stage(name: str, done: bool, fn, t_start: float) -> None:
  if done:
    print(f'[pipeline] {name}: already done, skipped', flush=True)
    return
  print(f'[pipeline] {name}: started at {time.time() - t_start:.0f} s', flush=True)
  t0 = time.time()
  fn()
  print(f'[pipeline] {name}: done in {time.time() - t0:.0f} s (elapsed {time.time() - t_start:.0f} s)', flush=True)


def arbiter_done(config: ml_collections.ConfigDict, workdir: str) -> bool:
  try:
    arbiter.finished_steps(config, workdir)
    return True
  except (OSError, ValueError):
    return False


def model_done(workdir: str) -> bool:
  """A trained model's stage is done when its eval.json (written last) loads and its Hugging Face export reads."""
  try:
    with open(os.path.join(workdir, 'eval.json')) as f:
      evaluation = json.load(f)
    read_hf_config(os.path.join(workdir, 'hf'))
  except (OSError, ValueError, CheckpointError):
    return False
  if 'validation_accuracy' not in evaluation:  # Before disjoint splits: its training set overlaps today's test split.
    raise ValueError(f'{workdir} holds a model trained by an older version, on splits that overlap the test split '
                     'of this one; use a new --workdir (or move that one aside) to train the pair again.')
  return True


def _table_done(table_dir: str) -> bool:
  """The table's stage is done when results.json (written last) loads; a lost table.md or pareto.png is written
  again from it, not recomputed."""
  try:
    with open(os.path.join(table_dir, 'results.json')) as f:
      results = json.load(f)
  except (OSError, ValueError):
    return False
  if not os.path.exists(os.path.join(table_dir, 'table.md')):
    files.write_atomically(os.path.join(table_dir, 'table.md'), report.format_table(results))
    print(f'[pipeline] {table_dir}/table.md was missing: written again from results.json', flush=True)
  if not os.path.exists(os.path.join(table_dir, 'pareto.png')):
    report.plot_pareto(results, os.path.join(table_dir, 'pareto.png'))
    print(f'[pipeline] {table_dir}/pareto.png was missing: drawn again from results.json', flush=True)
  return True


def table_choice(table_dir: str) -> tuple[int, float]:
  """(arbiter step, lam) of the table's CoSpec row, as chosen on validation."""
  with open(os.path.join(table_dir, 'results.json')) as f:
    results = json.load(f)
  row = next((r for r in results['rows'] if r.get('family') == 'cospec'), None)
  if row is None or 'arbiter_step' not in results:
    raise ValueError(f'{table_dir}/results.json has no validation-chosen CoSpec row: it was written by an older '
                     f'version of the table. Move {table_dir} aside (or use a new --workdir) and run again.')
  return results['arbiter_step'], row['lam']


def stage_dirs(config: ml_collections.ConfigDict, workdir: str) -> dict[str, str]:
  """{stage: its directory under `workdir`}; points `config`'s sections (configs/pipeline.py) at them and at one
  copy of the data set, as every stage (and a later reader of a finished run) sees them."""
  dirs = {name: os.path.join(workdir, name) for name in ('draft', 'target', 'arbiter', 'table', 'trace')}
  data_dir = config.data.data_dir or os.path.join(workdir, 'tfds')  # One copy of the data set for every stage.
  # A pretrained pair (configs/paper.py) has no draft/target sections: config.arbiter.pair names its checkpoints.
  trained = [name for name in ('draft', 'target') if name in config]
  for section in [config[name] for name in trained] + [config.arbiter]:
    section.data.data_dir = data_dir
  for name in trained:
    config.arbiter.pair[f'{name}_workdir'] = dirs[name]
  config.arbiter.arbiter_workdir = dirs['arbiter']
  return dirs


def _train_pair(config: ml_collections.ConfigDict, dirs: dict[str, str], t_start: float) -> None:
  """Trains the draft and the target (those not done yet); with config.train_pair_concurrently on a CPU, the draft
  in a second process while the target trains in this one (cospec_jax/train/beside.py: the same pair, sooner)."""
  trained = [name for name in ('draft', 'target') if name in config]
  todo = [name for name in trained if not model_done(dirs[name])]
  if not beside.wanted(config.get('train_pair_concurrently', False), len(todo)):
    for name in trained:
      _stage(f'train {name}', name not in todo,
             lambda name=name: trainer.train(config[name], dirs[name], f'--config.{name}'), t_start)
    return
  with beside.Training(config.draft, dirs['draft'], '--config.draft', '--config.train_pair_concurrently') as draft:
    print(f'[pipeline] train draft: started at {time.time() - t_start:.0f} s, in a second process beside the '
          f'target\'s (its output: {draft.log_path})', flush=True)
    _stage('train target', False, lambda: trainer.train(config.target, dirs['target'], '--config.target'), t_start)
  print(f'[pipeline] train draft: done in {draft.seconds:.0f} s, beside the target\'s (elapsed '
        f'{time.time() - t_start:.0f} s)', flush=True)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs every stage of `config` (configs/pipeline.py) under `workdir`; returns the table's results."""
  t_start = time.time()
  dirs = stage_dirs(config, workdir)
  _train_pair(config, dirs, t_start)
  # The pair, read once (on the mesh the stages use) by the first stage that needs it, and shared by the others.
  pair = functools.cache(lambda: arbiter.load_pair(config.arbiter, sharding.mesh_from_config(config.arbiter)))
  _stage('train arbiter', arbiter_done(config.arbiter, dirs['arbiter']),
         lambda: arbiter.train_arbiter(config.arbiter, dirs['arbiter'], '--config.arbiter', pair()), t_start)
  results = {}
  _stage('evaluate every method', _table_done(dirs['table']),
         lambda: results.update(evaluate.run(config.arbiter, dirs['table'], pair())), t_start)
  if not results:
    with open(os.path.join(dirs['table'], 'table.md')) as f:
      print(f.read())
  config.arbiter.trace.step, config.arbiter.trace.lam = table_choice(dirs['table'])
  _stage('trace who wrote each token', os.path.exists(os.path.join(dirs['trace'], 'trace.html')),
         lambda: trace.run(config.arbiter, dirs['trace'], pair()), t_start)
  print(f'[pipeline] finished in {time.time() - t_start:.0f} s; results in {dirs["table"]}', flush=True)
  return results
