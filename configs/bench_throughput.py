"""Throughput of static against continuous batching (finished rows refilled inside the compiled loop) on a
long-tailed answer-length distribution, for target-only decoding and greedy SPD at batch 8 and 32.

Run:
  python experiments/bench_throughput.py --config=configs/bench_throughput.py --workdir=runs/bench_throughput
Smoke (seconds; used by the tests):
  python experiments/bench_throughput.py --config=configs/bench_throughput.py:smoke --workdir=/tmp/throughput_smoke

Runtime: about 3-6 minutes on an idle 2-core CPU (197 s from a clean clone of 57c2014; 323 s from a clone of ecc5c63
on a slower day, 2026-12-05; 190 s on a 2-core Intel Xeon that evening, clone of cbcdbf8; most of it static batching
at batch 32); smoke ~30 s.
Reproduces: issue 18's throughput bar (continuous at least 1.5x static for SPD at batch 32). The pair is the decode
benchmark's draft (configs/bench_decode.py) with a smaller random target (~19M parameters) sharing its bigram
backbone, so a run fits in minutes on a CPU; see cospec_jax/throughput_benchmark.py for what is timed.
"""

import ml_collections

from cospec_jax import config_args


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' for the full benchmark, 'smoke' for a seconds-long version of the same thing."""
  smoke = config_args.is_smoke(arg, __file__)
  config = ml_collections.ConfigDict()
  bench = config.bench = ml_collections.ConfigDict()
  bench.target_path = ''  # HF checkpoint directory of the target; '' builds the pair from the configs below.
  bench.draft_path = ''  # HF checkpoint directory of the draft.
  bench.dtype = ''  # '' is bfloat16 for checkpoints, float32 for configs.
  bench.seed = 0  # Init of the config-built pair, the prompts and the budgets.
  bench.backbone_std = 1.0  # Config-built pair: init std of the shared embedding/head (decode_benchmark.py).
  bench.batch_sizes = (4,) if smoke else (8, 32)  # Rows decoded together; each must divide n_prompts.
  bench.gamma = 4  # Draft tokens per target call (SPD).
  # Continuous: waiting prompts prefilled B at a time ahead of need and copied into the rows as they free
  # (DecodeSettings.prefill_ahead = the batch size); False: each step's freed rows prefilled in place, alone.
  bench.prefill_ahead = True
  bench.max_new_tokens = 16 if smoke else 192  # The longest answer (budgets are clipped to it).
  bench.workload = ml_collections.ConfigDict(dict(
      n_prompts=8 if smoke else 256,  # Prompts in the workload.
      min_prompt=4 if smoke else 8, max_prompt=12 if smoke else 32,  # Prompt lengths, uniform in [min, max].
      median_new=6 if smoke else 24,  # Median answer length (tokens): log-normal budgets...
      sigma=0.8,  # ...with this log-space spread (0.8: the longest of 256 is ~9x the median, as in GSM8K answers).
      min_new=2 if smoke else 4))  # The shortest answer.

  vocab = 512
  bench.target = ml_collections.ConfigDict(dict(
      vocab_size=vocab, d_model=64 if smoke else 512, n_layers=2 if smoke else 6, n_heads=4 if smoke else 8,
      n_kv_heads=2 if smoke else 4, head_dim=16 if smoke else 64, ffw_dim=128 if smoke else 1536,
      initializer_range=0.012))
  bench.draft = ml_collections.ConfigDict(dict(
      vocab_size=vocab, d_model=32 if smoke else 128, n_layers=1 if smoke else 2, n_heads=2 if smoke else 4,
      n_kv_heads=1 if smoke else 2, head_dim=16 if smoke else 32, ffw_dim=64 if smoke else 384,
      initializer_range=0.02))
  return config
