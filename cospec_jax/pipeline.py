"""The whole embedded experiment in order: draft, target, arbiter, table, trace. Each stage lives in
<workdir>/<stage>.

A stage whose final output exists is skipped (a trained model's eval.json, the arbiter's last checkpoint, the
table's results.json, the trace's trace.html), so re-running the command after an interruption resumes where it
stopped, and a stage that fails leaves the finished stages' outputs untouched. Stages that train resume from their
own checkpoints. A pretrained pair (configs/paper.py) skips the first two.
"""

from __future__ import annotations

import os
import time

import ml_collections

from cospec_jax import evaluate, trace
from cospec_jax.train import arbiter, trainer
from cospec_jax.train.checkpoint import Checkpointer


def _stage(name: str, done: bool, fn, t_start: float) -> None:
  if done:
    print(f'[pipeline] {name}: already done, skipped', flush=True)
    return
  print(f'[pipeline] {name}: started at {time.time() - t_start:.0f} s', flush=True)
  t0 = time.time()
  fn()
  print(f'[pipeline] {name}: done in {time.time() - t0:.0f} s (elapsed {time.time() - t_start:.0f} s)', flush=True)


def _arbiter_done(config: ml_collections.ConfigDict, workdir: str) -> bool:
  directory = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(directory):
    return False
  checkpointer = Checkpointer(directory, config.rl.save_every, config.rl.keep)
  try:
    return checkpointer.latest_step() == config.rl.steps
  finally:
    checkpointer.close()


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs every stage of `config` (configs/pipeline.py) under `workdir`; returns the table's results."""
  t_start = time.time()
  dirs = {name: os.path.join(workdir, name) for name in ('draft', 'target', 'arbiter', 'table', 'trace')}
  data_dir = config.data.data_dir or os.path.join(workdir, 'tfds')  # One copy of the data set for every stage.
  # A pretrained pair (configs/paper.py) has no draft/target sections: config.arbiter.pair names its checkpoints.
  trained = [name for name in ('draft', 'target') if name in config]
  for section in [config[name] for name in trained] + [config.arbiter]:
    section.data.data_dir = data_dir
  for name in trained:
    config.arbiter.pair[f'{name}_workdir'] = dirs[name]
  config.arbiter.arbiter_workdir = dirs['arbiter']
  for name in trained:
    _stage(f'train {name}', os.path.exists(os.path.join(dirs[name], 'eval.json')),
           lambda name=name: trainer.train(config[name], dirs[name]), t_start)
  _stage('train arbiter', _arbiter_done(config.arbiter, dirs['arbiter']),
         lambda: arbiter.train_arbiter(config.arbiter, dirs['arbiter']), t_start)
  results = {}
  _stage('evaluate every method', os.path.exists(os.path.join(dirs['table'], 'results.json')),
         lambda: results.update(evaluate.run(config.arbiter, dirs['table'])), t_start)
  if not results:
    with open(os.path.join(dirs['table'], 'table.md')) as f:
      print(f.read())
  _stage('trace who wrote each token', os.path.exists(os.path.join(dirs['trace'], 'trace.html')),
         lambda: trace.run(config.arbiter, dirs['trace']), t_start)
  print(f'[pipeline] finished in {time.time() - t_start:.0f} s; results in {dirs["table"]}', flush=True)
  return results
