"""Decode speed of target-only vs speculative decoding, and against Hugging Face assisted generation.

Run (the README's first command):
  python -m cospec_jax.main --config=configs/bench_decode.py --workdir=runs/bench_decode
Smoke (seconds; used by the tests):
  python -m cospec_jax.main --config=configs/bench_decode.py:smoke --workdir=/tmp/bench_smoke
A real pair by path (Hugging Face checkpoint directories):
  python experiments/bench_decode.py --config=configs/bench_decode.py \
      --config.bench.target_path=/ckpt/Qwen2.5-7B --config.bench.draft_path=/ckpt/Qwen2.5-0.5B \
      --config.bench.mesh.data=2 --config.bench.mesh.model=4 --workdir=runs/qwen_bench   # e.g. a v5e-8

Where one step's time goes (experiments/profile_step.py, about 3 minutes; 1 minute at batch 1 only):
  python experiments/profile_step.py --config=configs/bench_decode.py --workdir=runs/profile_step

Runtime: 9 min 13 s on an idle 2-core CPU (2026-12-03, clean clone of a007323; 8 min 48 s to 10 min 12 s in other
runs; 15 min 54 s on a slower day, 2026-12-05, clone of 70736dd; 11 min 56 s on a 2-core Intel Xeon that evening,
clone of 5fb229e; 12 min 37 s there on 2026-12-06, clone of eab71d2, and 14 min 39 s at a slower hour that day,
clone of ee29512): the HF comparison, compiling each program, then 5 interleaved rounds, the batch-8 refilled
streams of 128 prompts the longest; smoke ~30 s.
Reproduces: issue "Core" bars: efficiency against the ideal speedup tau / (1 + gamma * c), and tokens/s against
HF assisted generation at batch 1, for a target ~115x the draft's parameters.
"""

import ml_collections

from cospec_jax import config_args


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' for the full benchmark, 'smoke' for a seconds-long version of the same thing."""
  smoke = config_args.is_smoke(arg, __file__)
  config = ml_collections.ConfigDict()
  config.job = 'bench_decode'  # What cospec_jax.main runs.

  bench = config.bench = ml_collections.ConfigDict()
  bench.target_path = ''  # HF checkpoint directory of the target; '' builds the pair from the configs below.
  bench.draft_path = ''  # HF checkpoint directory of the draft.
  bench.dtype = ''  # Activations and parameters: 'float32', 'bfloat16', or '' (bfloat16 for checkpoints, else float32).
  # Rows over `data`, weights over `model` (sharding.py); 1 x 1 is one device. Batch sizes must divide by data.
  bench.mesh = ml_collections.ConfigDict(dict(data=1, model=1))
  bench.seed = 0  # Init of the config-built pair and the prompts.
  bench.backbone_std = 1.0  # Config-built pair: init std of the shared embedding/head (cospec_jax/decode_benchmark.py).
  bench.batch_sizes = (1,) if smoke else (1, 8)  # Rows decoded together.
  bench.gammas = (2,) if smoke else (2, 4, 8)  # Draft tokens per target call.
  bench.prompt_length = 16  # Tokens per random prompt.
  bench.max_new_tokens = 16 if smoke else 128  # Tokens generated per row (no EOS: every row runs to this).
  # Timed rounds after the compile run; each round runs every program of a batch size once (target-only, draft-only,
  # SPD and the call-cost loops per gamma, the refilled streams), and each figure is its program's fastest round;
  # each efficiency is also computed round by round (the `rounds` columns: its spread within this run).
  bench.repeats = 1 if smoke else 5
  bench.hf_compare = True  # At batch 1, also time HF target-only and assisted generation (needs torch).
  # At batch > 1, also decode a stream of this many prompts per row with finished rows refilled (continuous
  # batching) with SPD: the "refilled" columns, against the static target-only rate (whose rows never idle). 0 skips.
  # The stream's tail (its last prompts finishing while other rows idle) weighs about 1 / (prompts per row): at 16
  # the counted cap (the `refilled cap` column) is 96-97%; each prompt per row adds ~20 s to the run.
  bench.stream_prompts_per_row = 2 if smoke else 16
  # The streams' waiting prompts prefilled a batch at a time ahead of need and copied into the rows as they free
  # (DecodeSettings.prefill_ahead = the batch size); False: each step's freed rows prefilled in place, alone.
  bench.stream_prefill_ahead = True
  bench.profile_batch_sizes = (1,) if smoke else (1, 8)  # experiments/profile_step.py: rows of the profiled step.
  bench.profile_gammas = (2,) if smoke else (4,)  # experiments/profile_step.py: its gammas.

  vocab = 512
  # Target ~60.6M params, draft ~0.52M: about 115x. The target is large enough that a one-token step is bound by
  # reading its weights even on a CPU, as decoding is on accelerators, so verifying gamma+1 tokens costs little more
  # than one. Its block init (0.012) sets its disagreement with the draft: ~3.4 tokens per target call at gamma 4.
  bench.target = ml_collections.ConfigDict(dict(
      vocab_size=vocab, d_model=64 if smoke else 768, n_layers=2 if smoke else 8, n_heads=4 if smoke else 12,
      n_kv_heads=2 if smoke else 4, head_dim=16 if smoke else 64, ffw_dim=128 if smoke else 2560,
      initializer_range=0.012))
  bench.draft = ml_collections.ConfigDict(dict(
      vocab_size=vocab, d_model=32 if smoke else 128, n_layers=1 if smoke else 2, n_heads=2 if smoke else 4,
      n_kv_heads=1 if smoke else 2, head_dim=16 if smoke else 32, ffw_dim=64 if smoke else 384,
      initializer_range=0.02))
  return config
