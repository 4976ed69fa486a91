"""The CoSpec arbiter: REINFORCE on the frozen embedded pair (train the pair first: configs/train_*.py).

Run:
  python -m cospec_jax.main --config=configs/train_arbiter.py --workdir=runs/arbiter \
      --config.pair.target_workdir=runs/target --config.pair.draft_workdir=runs/draft
Smoke (used by the tests, with a pair the test trains):
  python -m cospec_jax.main --config=configs/train_arbiter.py:smoke --workdir=/tmp/arbiter_smoke ...
Runtime: about 8 minutes on a 2-core CPU (150 steps of 16 prompts x 8 rollouts); smoke ~20 s.
Reproduces: the arbiter of issue "CoSpec itself" (training only; the comparison table is not built yet).
"""

import ml_collections

from cospec_jax.train import defaults


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' for the real run, 'smoke' for a seconds-long version of the same thing."""
  smoke = arg == 'smoke'
  config = ml_collections.ConfigDict()
  config.job = 'train_arbiter'  # What cospec_jax.main runs.
  config.seed = 3  # Policy init, prompt order and rollout randomness.
  config.data = defaults.arithmetic_data(smoke)  # Must be the data the pair was trained on.
  config.pair = ml_collections.ConfigDict(dict(
      target_workdir='runs/target',  # Workdir of configs/train_target.py (its hf/ export is read).
      draft_workdir='runs/draft',  # Workdir of configs/train_draft.py.
  ))
  config.policy = ml_collections.ConfigDict(dict(
      hidden=64,  # MLP width.
      projection=16,  # Width each model's hidden state is projected to.
  ))
  config.rl = ml_collections.ConfigDict(dict(
      steps=4 if smoke else 150,  # Policy updates.
      prompts_per_step=4 if smoke else 16,  # P: distinct training prompts per update.
      rollouts_per_prompt=4 if smoke else 8,  # K: rollouts of each (the leave-one-out group).
      lams=(0.0, 0.5, 1.0),  # Speed/accuracy knob values; each prompt group draws one.
      gamma=4,  # Draft tokens per target call.
      max_new_tokens=16 if smoke else 64,  # Solution length cap.
      max_decisions=32,  # Decision slots recorded per rollout (more are dropped and counted).
      learning_rate=1e-3,
      entropy_coef=0.01,  # Entropy bonus weight.
      grad_clip=1.0,
      save_every=2 if smoke else 25,
      keep=3,
      restore_step=-1,  # -1 resumes from the latest checkpoint.
      progress_bar=not smoke,
  ))
  config.eval = defaults.eval_config(smoke)
  return config
