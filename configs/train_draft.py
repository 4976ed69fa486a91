"""The embedded draft: a smaller character-level LM on the same task.

Run:
  python -m cospec_jax.main --config=configs/train_draft.py --workdir=runs/draft
Smoke (seconds; used by the tests):
  python -m cospec_jax.main --config=configs/train_draft.py:smoke --workdir=/tmp/draft_smoke
Runtime: about 2 minutes on a 2-core CPU (1 min 48 s measured, with data building and a 500-problem eval);
smoke ~10 s.
Reproduces: the draft of the embedded pair (issue "embedded default"): 24.6%, 40 points below the target.
"""

import ml_collections

from cospec_jax import config_args
from cospec_jax.train import defaults


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' for the real run, 'smoke' for a seconds-long version of the same thing."""
  return defaults.draft_config(smoke=config_args.is_smoke(arg, __file__))
