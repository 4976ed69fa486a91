"""The whole embedded experiment with one command: data, draft, target, arbiter (warm start + REINFORCE), table,
collaboration trace.

Run:
  python -m cospec_jax.main --config=configs/pipeline.py --workdir=runs/pipeline
Smoke (a few minutes on tiny models; exercised by the tests):
  python -m cospec_jax.main --config=configs/pipeline.py:smoke --workdir=/tmp/pipeline_smoke
Override any stage's setting on the command line, e.g. --config.arbiter.rl.steps=100 or
--config.target.train.steps=3000. Finished stages are skipped when the command is run again.
Runtime: 32.4 minutes on a 2-core CPU shared with other jobs for its first 20 minutes, measured 2026-12-02 from a
clean clone (data and draft 5.4 min, target 12.8 min, arbiter 6.7 min, table 7.2 min, trace 0.4 min; plus 1.8 min
of install); about 28 minutes expected on an idle machine (not measured end to end); smoke a few minutes.
Reproduces: the README's comparison table under the validation protocol (results.json, table.md, pareto.png in
<workdir>/table; every choice on validation, test read once) and the collaboration trace
(<workdir>/trace/trace.html).
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
