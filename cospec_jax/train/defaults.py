"""Shared defaults of the training configs, so the draft's and the target's files state only how they differ."""

from __future__ import annotations

import ml_collections

from cospec_jax import sharding
from cospec_jax.tasks.tokenizer import CharTokenizer


def arithmetic_data(smoke: bool, **difficulty) -> ml_collections.ConfigDict:
  """config.data for the embedded arithmetic task; `difficulty` overrides arithmetic.Difficulty fields."""
  data = ml_collections.ConfigDict()
  data.name = 'smoke' if smoke else 'default'  # Prefix of the TFDS builder config name (a digest of the fields follows).
  data.seed = 0  # The problems are a pure function of this seed.
  data.train_size = 256 if smoke else 50_000  # Problems per split.
  data.validation_size = 16 if smoke else 500
  data.test_size = 32 if smoke else 500
  data.data_dir = ''  # Where TFDS writes the data set; '' means <workdir>/tfds.
  data.difficulty = ml_collections.ConfigDict(dict(
      min_steps=2, max_steps=3, max_start=20, max_operand=20, max_multiplier=5, operations='+-*',
      multiply_share=1 / 3))
  data.difficulty.update(difficulty)
  # Freedom of wording (tasks/arithmetic.Wording): each step may be written in equivalent ways, drawn per step, so
  # two models disagree on wording (harmless) far more often than on substance. All 0 gives the terse task.
  data.wording = ml_collections.ConfigDict(dict(
      swap_share=0.5,  # '3*18=54' for '18*3=54' (+ and * only).
      words_share=0.5,  # '18 times 3=54'.
      is_share=0.5,  # '18*3 is 54'.
      period_share=0.5,  # '18*3=54.'
      connectives='so,then,now',  # Words that may open a step...
      connective_share=0.75,  # ...with this probability (none and each word equally likely).
  ))
  # The transfer family: in the pair's training mixture; the arbiter is trained on arithmetic alone, and the table
  # reports it on this family's test problems. family='' for arithmetic alone.
  data.transfer = ml_collections.ConfigDict(dict(
      family='units',  # 'Convert 3 weeks 4 days to days.'
      train_share=0.2,  # Share of the training problems.
      eval_size=16 if smoke else 200,  # Its problems in validation and in test (each).
  ))
  return data


def lm_config(smoke: bool, **model) -> ml_collections.ConfigDict:
  """config.model: a ModelConfig's fields for the character tokenizer's vocabulary."""
  base = dict(vocab_size=CharTokenizer().vocab_size, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16,
              ffw_dim=64, rope_theta=10_000.0, tie_embeddings=True, initializer_range=0.02)
  if not smoke:
    base.update(model)
  return ml_collections.ConfigDict(base)


def train_config(smoke: bool, **overrides) -> ml_collections.ConfigDict:
  """config.train: optimisation, checkpointing and logging."""
  train = ml_collections.ConfigDict(dict(
      steps=20 if smoke else 1500,  # Optimizer steps.
      batch_size=8 if smoke else 32,  # Sequences per step.
      max_len=128,  # Tokens per sequence (longer examples are an error).
      learning_rate=3e-3,  # Peak learning rate.
      warmup_steps=2 if smoke else 100,  # Linear warmup from 0.
      final_lr_fraction=0.05,  # Cosine decay ends at this fraction of the peak.
      weight_decay=0.05,  # AdamW decay, on matrices only.
      b1=0.9,
      b2=0.98,
      grad_clip=1.0,  # Global-norm clipping.
      save_every=10 if smoke else 250,  # Checkpoint interval in steps.
      keep=3,  # Checkpoints kept.
      log_every=5 if smoke else 50,  # Metrics interval in steps.
      restore_step=-1,  # -1 resumes from the latest checkpoint; a step number restores that one.
      progress_bar=not smoke,
  ))
  if not smoke:
    train.update(overrides)
  return train


def eval_config(smoke: bool) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      num_examples=32 if smoke else 500,  # Test problems decoded greedily after training.
      batch_size=32 if smoke else 100,  # Rows per decode call.
      max_new_tokens=88,  # Solution length cap (the longest worded solution is 83 tokens).
  ))


def supervised_config(name: str, seed: int, smoke: bool, **model) -> ml_collections.ConfigDict:
  """A whole config for `cospec_jax.main`'s 'train' job on the arithmetic task; `model` sets the LM's shape."""
  config = ml_collections.ConfigDict()
  config.job = 'train'  # What cospec_jax.main runs.
  config.name = name  # Shown in logs and eval.json.
  config.seed = seed  # Init and batch order.
  config.data = arithmetic_data(smoke)
  config.model = lm_config(smoke, **model)
  config.train = train_config(smoke)
  config.eval = eval_config(smoke)
  return config


def target_config(smoke: bool) -> ml_collections.ConfigDict:
  """The embedded target (0.80M parameters): configs/train_target.py."""
  return supervised_config('target', seed=1, smoke=smoke,
                           d_model=128, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=32, ffw_dim=384)


def draft_config(smoke: bool) -> ml_collections.ConfigDict:
  """The embedded draft (0.10M parameters): configs/train_draft.py."""
  return supervised_config('draft', seed=2, smoke=smoke,
                           d_model=64, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=32, ffw_dim=192)


def arbiter_config(smoke: bool, target_workdir: str = 'runs/target',
                   draft_workdir: str = 'runs/draft') -> ml_collections.ConfigDict:
  """A whole config for the 'train_arbiter' job: configs/train_arbiter.py."""
  config = ml_collections.ConfigDict()
  config.job = 'train_arbiter'  # What cospec_jax.main runs.
  config.seed = 3  # Policy init, prompt order and rollout randomness.
  config.data = arithmetic_data(smoke)  # Must be the data the pair was trained on.
  config.pair = ml_collections.ConfigDict(dict(
      target_workdir=target_workdir,  # Workdir of the target's 'train' job (its hf/ export is read).
      draft_workdir=draft_workdir,  # Workdir of the draft's.
  ))
  config.policy = ml_collections.ConfigDict(dict(
      hidden=64,  # MLP width.
      projection=16,  # Width each model's hidden state is projected to.
  ))
  config.warm_start = ml_collections.ConfigDict(dict(
      problems=64 if smoke else 1_000,  # Training problems whose mismatches are forked and labelled; 0 skips.
      batch_size=32 if smoke else 128,  # Rows per decode call while forking.
      steps=50 if smoke else 1000,  # Full-batch Adam steps of the supervised fit.
      learning_rate=3e-3,
      # Labels (counterfactual.keep_labels): keep the draft where P(fix) - P(break) + lam * speed_bonus
      # - deviation_cost > 0. speed_bonus: the value, in answers, of keeping a draft token at lam = 1;
      # deviation_cost: the price of any keep (risks compound over the keeps of one answer), so at lam = 0 a keep
      # that changes nothing is refused.
      speed_bonus=0.15,
      deviation_cost=0.05,
  ))
  config.rl = ml_collections.ConfigDict(dict(
      steps=4 if smoke else 200,  # Policy updates after the warm start.
      prompts_per_step=4 if smoke else 16,  # P: distinct training prompts per update.
      rollouts_per_prompt=4 if smoke else 8,  # K: rollouts of each (the leave-one-out group).
      lams=(0.0, 0.25, 0.5, 0.75, 1.0),  # Speed/accuracy knob values; each prompt group draws one.
      speed_weight=0.3,  # Reward = correct + lam * speed_weight * (tokens per target call) / (gamma + 1).
      gamma=8,  # Draft tokens per target call (8 leaves fewer mismatches at bonus positions, out of CoSpec's reach).
      max_new_tokens=16 if smoke else 88,  # Solution length cap.
      max_decisions=32,  # Decision slots recorded per rollout (more are dropped and counted).
      learning_rate=1e-4,
      entropy_coef=0.03,  # Entropy bonus weight (loss -= entropy_coef * mean policy entropy at decisions); the seed study's
      # choice on validation (docs/study/study.json 'tuning').
      normalize_advantages=False,  # Divide the advantages by their standard deviation over the batch.
      grad_clip=1.0,
      save_every=2 if smoke else 25,  # Each saved step is a candidate of the table's choice on validation.
      keep=1000,  # Checkpoints kept: all of them (the policy is small), so the best on validation remains.
      restore_step=-1,  # -1 resumes from the latest checkpoint.
      progress_bar=not smoke,
  ))
  config.eval = eval_config(smoke)
  config.mesh = mesh_config()
  config.distributed = distributed_config()
  return config


def mesh_config(data: int = 1, model: int = 1) -> ml_collections.ConfigDict:
  """config.mesh: the device mesh (cospec_jax/sharding.py). 1 x 1 is one device; data=-1 spreads the batch over
  every device of every process; model > 1 splits the weights by `rules`."""
  return ml_collections.ConfigDict(dict(
      data=data,  # Rows of each decode call and update are split over this many devices.
      model=model,  # The draft's and target's weights over this many (Megatron-style, by `rules`).
      rules=sharding.LLAMA_RULES,  # (regex on the parameter path, partition) pairs; the first match wins.
  ))


def distributed_config() -> ml_collections.ConfigDict:
  """config.distributed: multi-process launch (`sharding.initialize_distributed`). Empty fields are read from
  JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID or left to JAX's cluster detection (TPU pods)."""
  return ml_collections.ConfigDict(dict(
      enabled=False,  # True (or COSPEC_DISTRIBUTED=1) calls jax.distributed.initialize() before the job.
      coordinator_address='',  # host:port of process 0.
      num_processes=-1,
      process_id=-1,
  ))


def table_config(smoke: bool) -> ml_collections.ConfigDict:
  """config.table: what `cospec_jax.evaluate` compares, and how. Every method's settings are swept on validation and
  one rule (cospec_jax/selection.py) picks each method's point; the test split is read once, at those points."""
  return ml_collections.ConfigDict(dict(
      num_examples=32 if smoke else 500,  # Test problems, read once by the final table.
      validation_examples=16 if smoke else 300,  # Validation problems: every sweep and the checkpoint choice.
      batch_size=32 if smoke else 125,  # Rows per decode call for accuracy.
      # Each method's candidate settings ({setting: values}; every combination is tried on validation).
      temperatures=(0.7,) if smoke else (0.3, 0.7, 1.0),  # Speculative sampling (rejection sampling).
      relaxed=dict(topk=dict(k=(2, 3) if smoke else (2, 3, 4)),
                   threshold=dict(draft_confidence=(0.8,) if smoke else (0.5, 0.7, 0.9),
                                  target_floor=(0.05,) if smoke else (0.02, 0.1, 0.3)),
                   fly=dict(min_entropy=(0.5,) if smoke else (0.2, 0.5, 1.0),
                            window=(2,) if smoke else (1, 2, 3))),
      judge_max_harm=(0.5,) if smoke else (0.1, 0.3, 0.5, 0.7, 0.9),  # Both judges keep the draft below this.
      judge_lam=1.0,  # The fix-aware judge's labels are the warm start's at this lam (harmless forks count).
      lams=(0.0, 1.0) if smoke else (0.0, 0.25, 0.5, 0.75, 1.0),  # CoSpec's (and the supervised arbiter's) knob.
      # Wall-clock, every test row alike (evaluate.time_rows): compiled first, then timed in interleaved rounds.
      timing=dict(problems=8 if smoke else 100,  # Batch-1 timing runs on this many test problems...
                  batch_problems=32 if smoke else 250,  # ...and the table-batch timing on this many.
                  rounds=1 if smoke else 3),  # Rounds of timing; each row's fastest round counts.
  ))


def trace_config(smoke: bool) -> ml_collections.ConfigDict:
  """config.trace: which problems `cospec_jax.trace` shows."""
  return ml_collections.ConfigDict(dict(
      lam=0.0,  # CoSpec's speed/accuracy knob (the pipeline sets the table's choice).
      step=-1,  # Arbiter checkpoint; -1: the last the arbiter stage recorded (the pipeline sets the table's choice).
      examples=3 if smoke else 5,  # Problems shown where CoSpec is right and target-only wrong.
      problems=(),  # Or these test-problem indices, whoever was right.
      search=32 if smoke else 500,  # Test problems decoded to find examples.
      batch_size=32 if smoke else 125,  # Rows per decode call.
  ))
