"""The CoSpec arbiter: a counterfactual warm start, then REINFORCE, on the frozen embedded pair.

Train the pair first (configs/train_target.py, configs/train_draft.py), or run configs/pipeline.py, which does all.
Run:
  python -m cospec_jax.main --config=configs/train_arbiter.py --workdir=runs/arbiter \
      --config.pair.target_workdir=runs/target --config.pair.draft_workdir=runs/draft
Smoke (used by the tests, with a pair the test trains):
  python -m cospec_jax.main --config=configs/train_arbiter.py:smoke --workdir=/tmp/arbiter_smoke ...
Runtime: about 7 minutes on a 2-core CPU (6 min 41 s measured in the pipeline, 2026-12-02: forking 1,000
problems 1.3 min, the fit, 400 REINFORCE steps about 4 min); smoke ~30 s.
Reproduces: the arbiter of issue "CoSpec itself"; configs/reproduce_table.py evaluates it.
"""

import ml_collections

from cospec_jax import config_args
from cospec_jax.train import defaults


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' for the real run, 'smoke' for a seconds-long version of the same thing."""
  return defaults.arbiter_config(smoke=config_args.is_smoke(arg, __file__))
