"""The paper's table on the embedded pair: every method swept on validation, each at the point one rule chooses
there, then evaluated once on the test split, with intervals, McNemar and speed (cospec_jax/evaluate.py).

Needs the trained pair and arbiter (configs/train_*.py), or run configs/pipeline.py, which does all.
Run:
  python experiments/reproduce_table.py --config=configs/reproduce_table.py --workdir=runs/table \
      --config.pair.target_workdir=runs/target --config.pair.draft_workdir=runs/draft \
      --config.arbiter_workdir=runs/arbiter
Writes results.json, table.md and pareto.png to the workdir. Runtime: about 7 minutes on a 2-core CPU (7 min 10 s
measured in the pipeline, 2026-12-02, worded world); smoke about a minute.
"""

import ml_collections

from cospec_jax import config_args
from cospec_jax.train import defaults


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' for the real run, 'smoke' for a short version of the same thing."""
  smoke = config_args.is_smoke(arg, __file__)
  config = defaults.arbiter_config(smoke)  # The arbiter's own settings (policy shape, gamma, answer length).
  config.job = 'reproduce_table'
  config.arbiter_workdir = 'runs/arbiter'  # Workdir of configs/train_arbiter.py (checkpoints and forks are read).
  config.table = defaults.table_config(smoke)
  return config
