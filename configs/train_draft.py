"""The embedded draft: a smaller character-level LM on the same task as the target.

It is the target's run (configs/train_target.py: the same data, optimiser and evaluation; a draft and its target
must see the same problems) with its own model and seed, set here.
Run:
  python -m cospec_jax.main --config=configs/train_draft.py --workdir=runs/draft
Smoke (seconds; used by the tests):
  python -m cospec_jax.main --config=configs/train_draft.py:smoke --workdir=/tmp/draft_smoke
Make it bigger: config.model below (a draft close to the target's size agrees with it more often: more tokens per
target call, less speed per token); longer training with --config.train.steps=3000.
Runtime: 7 min 23 s to 8 min 18 s of training on an idle 2-core CPU in the pipeline, beside the target (two runs,
2026-12-05); smoke ~10 s.
Reproduces: the draft of the embedded pair, 52.4% greedy validation accuracy on arithmetic, 80.5% on units (the
target's 77.6% and 85.5% on the same machine), exactly on that machine with the pinned versions.
"""

import ml_collections

from cospec_jax import config_args


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' for the real run, 'smoke' for a seconds-long version of the same thing."""
  smoke = config_args.is_smoke(arg, __file__)
  config = config_args.load(__file__, 'train_target', arg)  # data, train and eval as the target's.
  config.name = 'draft'  # Shown in logs and eval.json.
  config.seed = 2  # Init and batch order (the target's is 1).
  # 0.23M parameters, 0.28 of the target's; the smoke model is the target's smoke model. Chosen on validation
  # (issue 13) when the questions became short and the batches cut (2026-12-05): the previous 0.33M draft (width 96,
  # SwiGLU 288) read 65.0%, 12.6 points below the target (the issue asks for 15); width 96 with SwiGLU 192 (0.25M)
  # read 67.6%; 2 layers at width 96 (0.22M) read 33.4%, and its arbiter stayed below target-only at lam 0 at every
  # checkpoint; width 80 (0.21M) read 48.2% but CoSpec's fast end fell 4.0 points below target-only; this one read
  # 52.4%, 25 points below, and met every bar of the issue on validation with the arbiter of then (REINFORCE at
  # 3e-4; configs/train_arbiter.py says why it is 1e-4 now).
  config.model.update(dict(
      d_model=32 if smoke else 88,
      n_layers=1 if smoke else 3,
      n_heads=2 if smoke else 3,
      n_kv_heads=1,
      head_dim=16 if smoke else 32,
      ffw_dim=64 if smoke else 192,
  ))
  return config
