"""The frozen, typed description of a decoder-only LM: the boundary below which no ConfigDict is read.

One dataclass covers the Llama family (Llama 2/3, Mistral-style GQA), Qwen2 (q/k/v biases) and Qwen3 (q/k RMSNorm).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

SUPPORTED_ROPE_TYPES = ('default', 'linear', 'llama3')


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """RoPE frequency scaling, as Hugging Face's `rope_parameters` / `rope_scaling` describe it."""

  rope_type: str = 'default'  # One of SUPPORTED_ROPE_TYPES.
  factor: float = 1.0  # 'linear' and 'llama3': how much the context was stretched.
  low_freq_factor: float = 1.0  # 'llama3' only.
  high_freq_factor: float = 4.0  # 'llama3' only.
  original_max_position_embeddings: int = 8192  # 'llama3' only: the pre-extension context.

  def __post_init__(self):
    if self.rope_type not in SUPPORTED_ROPE_TYPES:
      raise ValueError(
          f'rope_type={self.rope_type!r} is not supported; use one of {SUPPORTED_ROPE_TYPES} '
          '(other scalings such as yarn or dynamic NTK are not implemented).')


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Hyper-parameters of a decoder-only transformer LM. Hashable, so it can be a static jit argument."""

  vocab_size: int  # Rows of the embedding and the output head.
  d_model: int  # Residual stream width (HF: hidden_size).
  n_layers: int  # Transformer blocks.
  n_heads: int  # Query heads.
  n_kv_heads: int  # Key/value heads; n_heads % n_kv_heads == 0 (grouped-query attention).
  head_dim: int  # Width of one head; Qwen3 decouples it from d_model // n_heads.
  ffw_dim: int  # SwiGLU hidden width (HF: intermediate_size).
  rope_theta: float = 10_000.0  # RoPE base.
  rope_scaling: RopeScaling = RopeScaling()
  rms_eps: float = 1e-6  # RMSNorm epsilon.
  tie_embeddings: bool = False  # Output head reuses the embedding matrix.
  qkv_bias: bool = False  # Biases on the q/k/v projections (Qwen2).
  qk_norm: bool = False  # RMSNorm on each query/key head before RoPE (Qwen3).
  max_position_embeddings: int = 2048  # Informational; the KV cache length is chosen per generation.
  initializer_range: float = 0.02  # Std of the normal init of every matrix (HF's name and default).
  model_type: str = 'llama'  # Hugging Face's name for the architecture: 'llama', 'qwen2' or 'qwen3'.
  dtype: str = 'float32'  # Activations and KV cache: 'float32' or 'bfloat16'.
  param_dtype: str = 'float32'  # Parameters: 'float32' or 'bfloat16'.
  scan_layers: bool = False  # One nn.scan over the blocks (params under 'layers', stacked); compile time flat in depth.
  kv_repeat: int = 1  # Copies of each key/value head in the KV cache (to split it over a mesh by whole heads).

  def __post_init__(self):
    for name in ('vocab_size', 'd_model', 'n_layers', 'n_heads', 'n_kv_heads', 'head_dim', 'ffw_dim'):
      if getattr(self, name) < 1:
        raise ValueError(f'ModelConfig.{name}={getattr(self, name)} must be a positive integer.')
    if self.n_heads % self.n_kv_heads:
      raise ValueError(
          f'n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}; grouped-query attention '
          'shares each key/value head among n_heads // n_kv_heads query heads.')
    if self.kv_repeat < 1 or self.n_heads % (self.n_kv_heads * self.kv_repeat):
      raise ValueError(
          f'kv_repeat={self.kv_repeat}: the cache\'s n_kv_heads * kv_repeat = {self.n_kv_heads * self.kv_repeat} heads '
          f'must divide n_heads={self.n_heads}, so each cache head serves whole query heads.')
    if self.head_dim % 2:
      raise ValueError(f'head_dim={self.head_dim} must be even for rotary embeddings.')
    for name in ('dtype', 'param_dtype'):
      if getattr(self, name) not in ('float32', 'bfloat16'):
        raise ValueError(f"ModelConfig.{name}={getattr(self, name)!r}; use 'float32' or 'bfloat16'.")

  @property
  def jnp_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def cache_heads(self) -> int:
    """Key/value heads the KV cache holds: n_kv_heads * kv_repeat."""
    return self.n_kv_heads * self.kv_repeat

  @property
  def jnp_param_dtype(self):
    return jnp.dtype(self.param_dtype)

  def replace(self, **changes: Any) -> 'ModelConfig':
    return dataclasses.replace(self, **changes)

  def num_params(self) -> int:
    """Parameter count, computed from the shapes alone."""
    attn = self.d_model * self.head_dim * (2 * self.n_heads + 2 * self.n_kv_heads)
    if self.qkv_bias:
      attn += self.head_dim * (self.n_heads + 2 * self.n_kv_heads)
    if self.qk_norm:
      attn += 2 * self.head_dim
    mlp = 3 * self.d_model * self.ffw_dim
    block = attn + mlp + 2 * self.d_model
    head = 0 if self.tie_embeddings else self.vocab_size * self.d_model
    return self.vocab_size * self.d_model + self.n_layers * block + self.d_model + head


def from_dict(d: Mapping[str, Any]) -> ModelConfig:
  """Builds a ModelConfig from a plain mapping (e.g. a ConfigDict's `to_dict()`), rejecting unknown keys."""
  d = dict(d)
  known = {f.name for f in dataclasses.fields(ModelConfig)}
  unknown = sorted(set(d) - known)
  if unknown:
    raise ValueError(f'Unknown model config keys {unknown}; known keys are {sorted(known)}.')
  if isinstance(d.get('rope_scaling'), Mapping):
    d['rope_scaling'] = RopeScaling(**d['rope_scaling'])
  return ModelConfig(**d)
