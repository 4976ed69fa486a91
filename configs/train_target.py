"""The embedded target: a character-level LM trained from scratch on the arithmetic task.

Run:
  python -m cospec_jax.main --config=configs/train_target.py --workdir=runs/target
Smoke (seconds; used by the tests):
  python -m cospec_jax.main --config=configs/train_target.py:smoke --workdir=/tmp/target_smoke
Runtime: about 7 minutes on a 2-core CPU (6 min 44 s measured, with data building and a 500-problem eval);
smoke ~10 s.
Reproduces: the target of the embedded pair (issue "embedded default"): 64.4% greedy test accuracy.
"""

import ml_collections

from cospec_jax import config_args
from cospec_jax.train import defaults


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' for the real run, 'smoke' for a seconds-long version of the same thing."""
  return defaults.target_config(smoke=config_args.is_smoke(arg, __file__))
