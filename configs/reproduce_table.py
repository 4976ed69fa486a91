"""The paper's table on the embedded pair: every method swept on validation, each at the point one rule chooses
there, then evaluated once on the test split, with intervals, McNemar and speed (cospec_jax/evaluate.py).

Needs the trained pair and arbiter (configs/train_*.py), or run configs/pipeline.py, which does all; the arbiter's
own settings (policy shape, gamma, answer length, data) are read from configs/train_arbiter.py.
Run:
  python experiments/reproduce_table.py --config=configs/reproduce_table.py --workdir=runs/table \
      --config.pair.target_workdir=runs/target --config.pair.draft_workdir=runs/draft \
      --config.arbiter_workdir=runs/arbiter
Make it bigger: more problems (config.table.num_examples, validation_examples), finer sweeps (each method's
candidate settings below), more lams.
Writes results.json, table.md and pareto.png to the workdir. Runtime: 8 min 4 s on an idle 2-core CPU with today's
pair (measured in the pipeline, 2026-12-05; 8 min 17 s in a slower hour, 8 min 23 s at batch 125 with a draft of about
the same size; the words world's table took 9-15 min); smoke about a minute.
"""

import ml_collections

from cospec_jax import config_args


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' for the real run, 'smoke' for a short version of the same thing."""
  smoke = config_args.is_smoke(arg, __file__)
  config = config_args.load(__file__, 'train_arbiter', arg)  # The arbiter's settings, data and pair.
  config.job = 'reproduce_table'
  config.arbiter_workdir = 'runs/arbiter'  # Workdir of configs/train_arbiter.py (checkpoints and forks are read).
  # What is compared, and how. Every method's settings are swept on validation and one rule
  # (cospec_jax/selection.py) picks each method's point; the test split is read once, at those points.
  config.table = ml_collections.ConfigDict(dict(
      num_examples=32 if smoke else 500,  # Test problems, read once by the final table.
      validation_examples=16 if smoke else 300,  # Validation problems: every sweep and the checkpoint choice.
      # Rows per decode call for accuracy: 100 divides the 300 validation and 500 test problems, so no call decodes
      # padding rows (125 left a third validation call of 50 problems padded to 125; the sweeps took 15% longer).
      batch_size=32 if smoke else 100,
      # True: the accuracy passes (checkpoint choice, sweeps, test rows, transfer) decode all problems of a pass
      # through batch_size rows, finished rows refilled (continuous batching: the same tokens for deterministic
      # rules, other random keys for sampling ones). It decodes faster (1.2-1.5x, experiments/table_batching.py)
      # but compiles a larger loop (a prefill per refill size) per family and split, where static batches share
      # one per family: on the 2-core CPU the embedded table stage took 19 min 24 s with it (2026-12-03) against
      # 5 min 29 s without. Turn it on where decoding outweighs compiling (long answers, large models); the
      # wall-clock columns are timed with static batches either way (timing below).
      continuous=False,
      # Each method's candidate settings ({setting: values}; every combination is tried on validation).
      temperatures=(0.7,) if smoke else (0.3, 0.7, 1.0),  # Speculative sampling (rejection sampling).
      relaxed=dict(topk=dict(k=(2, 3) if smoke else (2, 3, 4)),
                   threshold=dict(draft_confidence=(0.8,) if smoke else (0.5, 0.7, 0.9),
                                  target_floor=(0.05,) if smoke else (0.02, 0.1, 0.3)),
                   fly=dict(min_entropy=(0.5,) if smoke else (0.2, 0.5, 1.0),
                            window=(2,) if smoke else (1, 2, 3))),
      judge_max_harm=(0.5,) if smoke else (0.1, 0.3, 0.5, 0.7, 0.9),  # Both judges keep the draft below this.
      judge_lam=1.0,  # The fix-aware judge's labels are the warm start's at this lam (harmless forks count).
      lams=(0.0, 1.0) if smoke else (0.0, 0.25, 0.5, 1.0, 1.5, 2.0),  # CoSpec's (and the supervised arbiter's) knob.
      # Wall-clock, every test row alike (evaluate.time_rows): compiled first, then timed in rounds interleaved
      # call by call; speculative rows also with a one-step budget, so their time per step is net of each call's
      # prefill, host work and first step.
      timing=dict(problems=8 if smoke else 100,  # Batch-1 timing runs on this many test problems...
                  batch_problems=32 if smoke else 200,  # ...and the table-batch timing on this many (two full calls).
                  rounds=1 if smoke else 3),  # Rounds of timing; each decode call's fastest round counts.
  ))
  return config
