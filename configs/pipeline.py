"""The whole embedded experiment with one command: data, draft, target, arbiter (warm start + REINFORCE), table,
collaboration trace.

Run:
  python -m cospec_jax.main --config=configs/pipeline.py --workdir=runs/pipeline
Smoke (a few minutes on tiny models; exercised by the tests):
  python -m cospec_jax.main --config=configs/pipeline.py:smoke --workdir=/tmp/pipeline_smoke
Override any stage's setting on the command line, e.g. --config.arbiter.rl.steps=100 or
--config.target.train.steps=3000. Finished stages are skipped when the command is run again.
Runtime: about 21 minutes on a 2-core CPU (stages measured separately: draft 1.8 min, target 6.7 min, arbiter
8.5 min, table 3.6 min); smoke about a minute.
Reproduces: the table of issue "CoSpec itself" (results.json, table.md, pareto.png in <workdir>/table) and writes
the collaboration trace (<workdir>/trace/trace.html).
"""

import ml_collections

from cospec_jax import config_args
from cospec_jax.train import defaults


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' for the real run, 'smoke' for a short version of the same thing."""
  smoke = config_args.is_smoke(arg, __file__)
  config = ml_collections.ConfigDict()
  config.job = 'pipeline'  # What cospec_jax.main runs.
  config.data = ml_collections.ConfigDict(dict(data_dir=''))  # '' keeps the data set in <workdir>/tfds.
  config.draft = defaults.draft_config(smoke)  # configs/train_draft.py.
  config.target = defaults.target_config(smoke)  # configs/train_target.py.
  config.arbiter = defaults.arbiter_config(smoke)  # configs/train_arbiter.py; pair paths are set per workdir.
  config.arbiter.arbiter_workdir = ''  # Set to <workdir>/arbiter by the pipeline.
  config.arbiter.table = defaults.table_config(smoke)  # configs/reproduce_table.py.
  config.arbiter.trace = defaults.trace_config(smoke)  # configs/trace.py.
  return config
