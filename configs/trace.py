"""The collaboration trace: CoSpec's answers with every token marked by who wrote it (draft accepted, draft kept at a
mismatch by the arbiter, target correction, bonus), on test problems where CoSpec is right and target-only wrong.

Needs the trained pair and arbiter (configs/train_*.py or configs/pipeline.py, whose last stage runs this); the
arbiter's own settings (policy shape, gamma, answer length, data) are read from configs/train_arbiter.py.
Run:
  python experiments/trace.py --config=configs/trace.py --workdir=runs/trace \
      --config.pair.target_workdir=runs/target --config.pair.draft_workdir=runs/draft \
      --config.arbiter_workdir=runs/arbiter
Particular problems: --config.trace.problems='(3, 17)'. Prints colored text; writes trace.html to the workdir.
Runtime: 22-56 s on an idle 2-core CPU (measured in the pipeline, 2026-12-03 to 2026-12-05; 32-35 s with today's
pair; it decodes config.trace.search problems twice).
"""

import ml_collections

from cospec_jax import config_args


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' for the real run, 'smoke' for a short version of the same thing."""
  smoke = config_args.is_smoke(arg, __file__)
  config = config_args.load(__file__, 'train_arbiter', arg)  # The arbiter's settings, data and pair.
  config.job = 'trace'
  config.arbiter_workdir = 'runs/arbiter'  # Workdir of configs/train_arbiter.py.
  config.trace = ml_collections.ConfigDict(dict(
      lam=0.0,  # CoSpec's speed/accuracy knob (the pipeline sets the table's choice).
      step=-1,  # Arbiter checkpoint; -1: the last the arbiter stage recorded (the pipeline sets the table's choice).
      examples=3 if smoke else 5,  # Problems shown where CoSpec is right and target-only wrong.
      problems=(),  # Or these test-problem indices, whoever was right.
      search=32 if smoke else 500,  # Test problems decoded to find examples.
      batch_size=32 if smoke else 125,  # Rows per decode call.
  ))
  return config
