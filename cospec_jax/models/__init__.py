"""Decoder-only LMs (Llama, Qwen2, Qwen3) and Hugging Face checkpoint import/export."""

from cospec_jax.models.config import ModelConfig, RopeScaling
from cospec_jax.models.hf_checkpoint import (CheckpointError, fingerprint, load_hf_checkpoint, read_hf_config,
                                             save_hf_checkpoint)
from cospec_jax.models.transformer import Cache, KVCache, Transformer, apply, init_cache, init_params, param_shapes
