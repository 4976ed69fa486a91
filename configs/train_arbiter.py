"""The CoSpec arbiter: a counterfactual warm start, then REINFORCE, on the frozen embedded pair.

Train the pair first (configs/train_target.py, configs/train_draft.py), or run configs/pipeline.py, which does all.
Run:
  python -m cospec_jax.main --config=configs/train_arbiter.py --workdir=runs/arbiter \
      --config.pair.target_workdir=runs/target --config.pair.draft_workdir=runs/draft
Smoke (used by the tests, with a pair the test trains):
  python -m cospec_jax.main --config=configs/train_arbiter.py:smoke --workdir=/tmp/arbiter_smoke ...
Make it bigger: more forked problems (config.warm_start.problems), more REINFORCE (config.rl.steps, prompts_per_step,
rollouts_per_prompt), a wider policy (config.policy); a real pair by checkpoint path: configs/paper.py.
Runtime: 4 min 21 s on an idle 2-core CPU with today's pair, measured in the pipeline 2026-12-05 (forking 1,000
problems about 100 s, then the fit, 100 REINFORCE steps and the checkpoint checks; 4 min 1 s to 4 min 47 s in other
runs that day); smoke ~30 s.
Reproduces: the arbiter the README's table evaluates (configs/reproduce_table.py).
Writes <workdir>/counterfactual_forks.npz (the labelled forks), checkpoints (orbax, every save_every steps), done.json.
"""

import ml_collections

from cospec_jax import config_args
from cospec_jax import sharding


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' for the real run, 'smoke' for a seconds-long version of the same thing."""
  smoke = config_args.is_smoke(arg, __file__)
  config = ml_collections.ConfigDict()
  config.job = 'train_arbiter'  # What cospec_jax.main runs.
  config.seed = 3  # Policy init, prompt order and rollout randomness.
  # The problems: the pair's data (configs/train_target.py), which the arbiter must share; it trains on the training
  # split's arithmetic problems only.
  config.data = config_args.load(__file__, 'train_target', arg).data

  config.pair = ml_collections.ConfigDict(dict(
      target_workdir='runs/target',  # Workdir of the target's 'train' job (its hf/ export is read).
      draft_workdir='runs/draft',  # Workdir of the draft's.
  ))

  # The policy (cospec_jax/train/arbiter.py): at each mismatch, P(keep the draft's token) from both models' scalar
  # features (probabilities, entropies, margins), lam, and with projection > 0 their hidden states projected.
  config.policy = ml_collections.ConfigDict(dict(
      hidden=64,  # MLP width.
      projection=0,  # Width each model's hidden state is projected to; 0: scalar features only.
  ))

  # The warm start (cospec_jax/train/counterfactual.py): fork every mismatch of greedy SPD on training problems, finish
  # each fork both ways, and fit the policy to the labels.
  config.warm_start = ml_collections.ConfigDict(dict(
      problems=64 if smoke else 1_000,  # Training problems whose mismatches are forked and labelled; 0 skips.
      batch_size=32 if smoke else 128,  # Rows per decode call while forking.
      steps=50 if smoke else 1000,  # Full-batch Adam steps of the supervised fit (0: input statistics only).
      learning_rate=3e-3,
      # Labels (counterfactual.keep_labels): keep the draft where P(fix) - P(break) + lam * speed_bonus
      # - deviation_cost > 0. speed_bonus: the value, in answers, of keeping a draft token at lam = 1;
      # deviation_cost: the price of any keep (risks compound over the keeps of one answer), so at lam = 0 a keep
      # that changes nothing is refused.
      speed_bonus=0.15,
      deviation_cost=0.05,
  ))

  # REINFORCE (cospec_jax/train/reinforce.py): P prompts x K rollouts of CoSpec decoding per update, leave-one-out
  # baseline within each prompt's group.
  config.rl = ml_collections.ConfigDict(dict(
      # Policy updates after the warm start: 100, the seed study's (configs/study.py), so its pair 0 / arbiter seed 0
      # run is this arbiter. The 200-step run of 2026-12-04 chose step 75 on validation (steps 125-200 were 1.6-2.6
      # points below it at lam 0), and a constant learning rate makes steps 1-100 the same either way.
      steps=4 if smoke else 100,
      prompts_per_step=4 if smoke else 16,  # P: distinct training prompts per update.
      rollouts_per_prompt=4 if smoke else 8,  # K: rollouts of each (the leave-one-out group).
      lams=(0.0, 0.25, 0.5, 1.0, 1.5, 2.0),  # Speed/accuracy knob values; each prompt group draws one.
      speed_weight=0.3,  # Reward = correct + lam * speed_weight * (tokens per target call) / (gamma + 1).
      gamma=8,  # Draft tokens per target call (8 leaves fewer mismatches at bonus positions, out of CoSpec's reach).
      max_new_tokens=16 if smoke else 88,  # Solution length cap.
      max_decisions=32,  # Decision slots recorded per rollout (more are dropped and counted).
      # The learning rate and the entropy bonus (loss -= entropy_coef * mean policy entropy at decisions): the seed
      # study's choice on validation in this world (configs/study.py's grid: entropy 0 or 0.03 x learning rate 1e-4
      # or 3e-4, 100 steps, pair seed 0 with an arbiter seed no run uses; best checkpoint at lam 0 on 300 problems:
      # 79.3 / 78.0 / 79.0 / 79.0%, 2026-12-05). The words world's study chose 3e-4 and 0 (72.0 / 73.3 / 72.3 /
      # 73.0%), the first study 1e-4 and 0.03; the grid's points are 1-4 answers apart, so read it as a tie the rule
      # broke, not as a finding.
      learning_rate=1e-4,
      entropy_coef=0.0,
      normalize_advantages=False,  # Divide the advantages by their standard deviation over the batch.
      grad_clip=1.0,  # Global-norm clipping before Adam.
      save_every=2 if smoke else 25,  # Each saved step is a candidate of the table's choice on validation.
      keep=1000,  # Checkpoints kept: all of them (the policy is small), so the best on validation remains.
      restore_step=-1,  # -1 resumes from the latest checkpoint.
      progress_bar=not smoke,
  ))

  # Devices (cospec_jax/sharding.py). 1 x 1 is one device; data=-1 spreads the batch over every device of every
  # process; model > 1 splits the weights Megatron-style by `rules` (the library's Llama rules; nobody edits them).
  config.mesh = ml_collections.ConfigDict(dict(data=1, model=1, rules=sharding.LLAMA_RULES))
  # Multi-process launch (sharding.initialize_distributed). Empty fields are read from JAX_COORDINATOR_ADDRESS,
  # JAX_NUM_PROCESSES, JAX_PROCESS_ID or left to JAX's cluster detection (TPU pods).
  config.distributed = ml_collections.ConfigDict(dict(
      enabled=False,  # True (or COSPEC_DISTRIBUTED=1) calls jax.distributed.initialize() before the job.
      coordinator_address='',  # host:port of process 0.
      num_processes=-1,
      process_id=-1,
  ))
  return config
