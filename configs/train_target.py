"""The embedded target: a character-level LM trained from scratch on the arithmetic task.

Run:
  python -m cospec_jax.main --config=configs/train_target.py --workdir=runs/target
Smoke (seconds; used by the tests):
  python -m cospec_jax.main --config=configs/train_target.py:smoke --workdir=/tmp/target_smoke
Runtime: about 8 minutes on an idle 2-core CPU (12 min 49 s measured on a loaded one, with data building and the
validation evals); smoke ~10 s.
Reproduces: the target of the embedded pair, 78.0% greedy validation accuracy on arithmetic, 90.0% on units.
"""

import ml_collections

from cospec_jax import config_args
from cospec_jax.train import defaults


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' for the real run, 'smoke' for a seconds-long version of the same thing."""
  return defaults.target_config(smoke=config_args.is_smoke(arg, __file__))
