"""The whole embedded experiment in order: draft, target, arbiter, table. Each stage lives in <workdir>/<stage>.

A stage whose final output exists is skipped (a trained model's eval.json, the arbiter's last checkpoint, the
table's results.json), so re-running the command after an interruption resumes where it stopped, and a stage that
fails leaves the finished stages' outputs untouched. Stages that train resume from their own checkpoints.
"""

from __future__ import annotations

import os
import time

import ml_collections

from cospec_jax import evaluate
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
  dirs = {name: os.path.join(workdir, name) for name in ('draft', 'target', 'arbiter', 'table')}
  data_dir = config.data.data_dir or os.path.join(workdir, 'tfds')  # One copy of the data set for every stage.
  for section in (config.draft, config.target, config.arbiter):
    section.data.data_dir = data_dir
  config.arbiter.pair.target_workdir, config.arbiter.pair.draft_workdir = dirs['target'], dirs['draft']
  config.arbiter.arbiter_workdir = dirs['arbiter']
  for name in ('draft', 'target'):
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
  print(f'[pipeline] finished in {time.time() - t_start:.0f} s; results in {dirs["table"]}', flush=True)
  return results
