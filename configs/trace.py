"""The collaboration trace: CoSpec's answers with every token marked by who wrote it (draft accepted, draft kept at a
mismatch by the arbiter, target correction, bonus), on test problems where CoSpec is right and target-only wrong.

Needs the trained pair and arbiter (configs/train_*.py or configs/pipeline.py, whose last stage runs this).
Run:
  python experiments/trace.py --config=configs/trace.py --workdir=runs/trace \
      --config.pair.target_workdir=runs/target --config.pair.draft_workdir=runs/draft \
      --config.arbiter_workdir=runs/arbiter
Particular problems: --config.trace.problems='(3, 17)'. Prints colored text; writes trace.html to the workdir.
Runtime: under a minute on a 2-core CPU (it decodes config.trace.search problems twice).
"""

import ml_collections

from cospec_jax import config_args
from cospec_jax.train import defaults


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' for the real run, 'smoke' for a short version of the same thing."""
  smoke = config_args.is_smoke(arg, __file__)
  config = defaults.arbiter_config(smoke)  # The arbiter's own settings (policy shape, gamma, answer length).
  config.job = 'trace'
  config.arbiter_workdir = 'runs/arbiter'  # Workdir of configs/train_arbiter.py.
  config.trace = defaults.trace_config(smoke)
  return config
