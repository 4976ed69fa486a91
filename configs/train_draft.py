"""The embedded draft: a smaller character-level LM on the same task.

Run:
  python -m cospec_jax.main --config=configs/train_draft.py --workdir=runs/draft
Smoke (seconds; used by the tests):
  python -m cospec_jax.main --config=configs/train_draft.py:smoke --workdir=/tmp/draft_smoke
Runtime: about 3 minutes on an idle 2-core CPU (5 min 24 s measured on a loaded one, with data building and the
validation evals); smoke ~10 s.
Reproduces: the draft of the embedded pair, 4.4% greedy validation accuracy on arithmetic (the target's 78.0%).
"""

import ml_collections

from cospec_jax import config_args
from cospec_jax.train import defaults


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' for the real run, 'smoke' for a seconds-long version of the same thing."""
  return defaults.draft_config(smoke=config_args.is_smoke(arg, __file__))
