"""The embedded target: a character-level LM trained from scratch on the arithmetic task (and the units family).

Run:
  python -m cospec_jax.main --config=configs/train_target.py --workdir=runs/target
Smoke (seconds; used by the tests):
  python -m cospec_jax.main --config=configs/train_target.py:smoke --workdir=/tmp/target_smoke
Make it bigger: config.model (e.g. --config.model.d_model=256 --config.model.n_layers=6), more data
(--config.data.train_size=200000) and steps (--config.train.steps=3000); harder problems in config.data.difficulty.
The draft (configs/train_draft.py) and the arbiter (configs/train_arbiter.py) read this file's data fields, so the
pair and the arbiter always see the same problems.
Runtime: 11 min 40 s to 15 min 26 s on an idle 2-core CPU in the pipeline, the draft training beside it (2026-12-05,
four runs of the same computation; 1,500 steps, then the validation evals); smoke ~10 s.
Reproduces: the target of the embedded pair, 77.6% greedy validation accuracy on arithmetic and 85.5% on units on
2026-12-05's machine (the README's table; five runs, the same to the digit); the words world's target (question
'words', width_multiple 0) read 72.0% there and 78.0% on 2026-12-02's machine: another CPU trains another pair.
Writes <workdir>/checkpoints (orbax), <workdir>/hf (a Hugging Face checkpoint), eval.json, metrics.jsonl.
"""

import ml_collections

from cospec_jax import config_args
from cospec_jax.tasks.tokenizer import CharTokenizer


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' for the real run, 'smoke' for a seconds-long version of the same thing."""
  smoke = config_args.is_smoke(arg, __file__)
  config = ml_collections.ConfigDict()
  config.job = 'train'  # What cospec_jax.main runs.
  config.name = 'target'  # Shown in logs and eval.json.
  config.seed = 1  # Init and batch order.

  # The task (cospec_jax/tasks/arithmetic.py): each problem is a pure function of (seed, split, index); the splits
  # are disjoint by content. Built once by TFDS.
  config.data = ml_collections.ConfigDict()
  config.data.name = 'smoke' if smoke else 'default'  # Prefix of the TFDS builder config name (a digest follows).
  config.data.seed = 0
  config.data.train_size = 256 if smoke else 50_000  # Problems per split.
  config.data.validation_size = 16 if smoke else 500
  config.data.test_size = 32 if smoke else 500
  config.data.data_dir = ''  # Where TFDS writes the data set; '' means <workdir>/tfds.
  config.data.difficulty = ml_collections.ConfigDict(dict(
      min_steps=2, max_steps=3,  # Operations per problem.
      max_start=20,  # The starting number is drawn from 1..max_start...
      max_operand=20,  # ...each + or - operand from 1..max_operand...
      max_multiplier=5,  # ...and each * operand from 2..max_multiplier.
      operations='+-*',
      multiply_share=1 / 3,  # Chance that a step multiplies.
  ))
  # Freedom of wording (arithmetic.Wording): each step may be written in equivalent ways, drawn per step, so two
  # models disagree on wording (harmless) far more often than on substance. All 0 gives the terse task.
  config.data.wording = ml_collections.ConfigDict(dict(
      swap_share=0.5,  # '3*18=54' for '18*3=54' (+ and * only).
      words_share=0.5,  # '18 times 3=54'.
      is_share=0.5,  # '18*3 is 54'.
      period_share=0.5,  # '18*3=54.'
      connectives='so,then,now',  # Words that may open a step...
      connective_share=0.75,  # ...with this probability (none and each word equally likely),
      # Two more wordings of no extra length, off: on at 0.5 each (2026-12-03) they made the target weaker (66.0% on
      # validation) and CoSpec's speed end worse (README, the bullet "How the speed end was reached"), so the table's
      # world keeps them at 0.
      capital_share=0.0,  # ...capitalised with this probability ('So 54 times 2 is 108').
      cross_share=0.0,  # 'x' for a written '*' ('18x3=54').
      # 'short' ('From 18: *3, -4.') or 'words' ('Start with 18. Times 3. Minus 4.': the same problems, 35 question
      # characters on average against 22). The words world was the table's until 2026-12-05 (README, "Two commands":
      # its pair trained in 17 min 51 s against 12 min 16 s for the short one).
      question='short',
  ))
  # The transfer family: in the pair's training mixture; the arbiter is trained on arithmetic alone, and the table
  # reports it on this family's test problems. family='' for arithmetic alone.
  config.data.transfer = ml_collections.ConfigDict(dict(
      family='units',  # 'Convert 3 weeks 4 days to days.'
      train_share=0.2,  # Share of the training problems.
      eval_size=16 if smoke else 200,  # Its problems in validation and in test (each).
  ))

  # A Llama-style decoder (cospec_jax/models/transformer.py): 0.80M parameters; the smoke model is tiny.
  config.model = ml_collections.ConfigDict(dict(
      vocab_size=CharTokenizer().vocab_size,
      d_model=32 if smoke else 128,
      n_layers=1 if smoke else 4,
      n_heads=2 if smoke else 4,
      n_kv_heads=1 if smoke else 2,  # Grouped-query attention: heads share this many key/value heads.
      head_dim=16 if smoke else 32,
      ffw_dim=64 if smoke else 384,  # SwiGLU hidden width.
      rope_theta=10_000.0,
      tie_embeddings=True,  # The output head is the embedding's transpose.
      initializer_range=0.02,  # Init std of the weights.
  ))

  config.train = ml_collections.ConfigDict(dict(
      steps=20 if smoke else 1500,  # Optimizer steps.
      batch_size=8 if smoke else 32,  # Sequences per step.
      max_len=128,  # Tokens per sequence (longer examples are an error).
      width_multiple=8,  # Each batch is cut to its longest example, rounded up to this; 0 keeps max_len columns.
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

  config.eval = ml_collections.ConfigDict(dict(
      num_examples=32 if smoke else 500,  # Validation problems decoded greedily after training.
      batch_size=32 if smoke else 100,  # Rows per decode call.
      max_new_tokens=88,  # Solution length cap (the longest worded solution is 83 tokens).
  ))
  return config
