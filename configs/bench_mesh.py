"""Decode throughput against mesh shape and batch size (cospec_jax/mesh_benchmark.py), on 8 simulated CPU devices or a
TPU slice. What it can and cannot say about real hardware is in the module's docstring and the README.

Run (8 simulated devices on a CPU; on a TPU VM drop XLA_FLAGS):
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m cospec_jax.main --config=configs/bench_mesh.py \
      --workdir=runs/bench_mesh
Smoke (seconds; used by the tests): --config=configs/bench_mesh.py:smoke
Runtime: about 11 minutes on a 2-core CPU with 8 simulated devices (5 meshes x 3 batch sizes); smoke ~30 s.
"""

import ml_collections

from cospec_jax import config_args
from cospec_jax import sharding


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' for the full benchmark, 'smoke' for a seconds-long version of the same thing."""
  smoke = config_args.is_smoke(arg, __file__)
  config = ml_collections.ConfigDict()
  config.job = 'bench_mesh'  # What cospec_jax.main runs.
  # How weights split over the model axis: the library's Llama rules ((regex on the parameter path, partition) pairs;
  # nobody edits them). The mesh shapes are bench.meshes.
  config.mesh = ml_collections.ConfigDict(dict(rules=sharding.LLAMA_RULES))
  bench = config.bench = ml_collections.ConfigDict()
  bench.meshes = ((1, 1), (8, 1)) if smoke else ((1, 1), (8, 1), (4, 2), (2, 4), (1, 8))  # (data, model) shapes.
  bench.batch_sizes = (8,) if smoke else (8, 32, 64)  # Rows per call; a mesh skips those its data axis won't split.
  bench.gamma = 4  # Draft tokens per target call.
  bench.prompt_length = 16  # Tokens per random prompt.
  bench.max_new_tokens = 8 if smoke else 64  # Per row (no EOS: every row runs to this).
  bench.repeats = 1 if smoke else 3  # Timed passes after the compile pass; the fastest counts.
  # A random target (~13M parameters; every width divides by 8, so each model axis splits it) and its first
  # layer as the draft.
  bench.target = ml_collections.ConfigDict(dict(
      vocab_size=512, d_model=64 if smoke else 512, n_layers=2 if smoke else 4, n_heads=8, n_kv_heads=8,
      head_dim=8 if smoke else 64, ffw_dim=128 if smoke else 2048))
  bench.draft_layers = 1
  return config
