"""A decoder-only LM in Flax linen covering Llama, Qwen2 and Qwen3, with an explicit fixed-size KV cache.

Shapes are named in the variables: B batch, L tokens in this call, S cache slots, D model width, N query heads,
K key/value heads, G = N // K query heads per key/value head, H head width, F feed-forward width, V vocabulary,
Y layers. The cache holds C = K * kv_repeat heads: each key/value head may be repeated so that the cache splits over
a mesh's `model` axis by whole heads even when K does not divide it (MaxText's layout).

The KV cache is indexed by absolute position: slot `p` of a row holds the key/value of that row's token at position
`p`. A call writes its tokens' keys/values at their positions, then every query at position `p` attends to slots
`0..p`. Slots past a row's committed length hold stale entries (from a rejected draft, or prompt padding); they are
never attended to, because every position below `p` is written before a query at `p` is computed, and they are
overwritten when the row gets there. So rolling back is length bookkeeping only, and one cache serves prefill,
one-token steps and multi-token verify steps at per-row offsets.

Layers: with `config.scan_layers` the blocks are one `nn.scan` (parameters stacked under 'layers' with a leading
[Y] axis), so the compiled program holds one block whatever the depth; otherwise they are unrolled as 'layers_0',
'layers_1', ... `stack_layers` / `unstack_layers` convert between the two parameter layouts.
"""

from __future__ import annotations

from typing import Any, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cospec_jax.models.config import ModelConfig


@flax.struct.dataclass
class KVCache:
  """Keys and values of every attention layer, by absolute position: one buffer per kind for all layers, so a
  scanned stack and an unrolled one update the same arrays in place."""

  k_YxBxSxCxH: jax.Array
  v_YxBxSxCxH: jax.Array


Cache = KVCache


def init_cache(config: ModelConfig, batch_size: int, length: int) -> Cache:
  """Returns an all-zero cache: k and v of [n_layers, batch_size, length, cache_heads, head_dim]."""
  shape = (config.n_layers, batch_size, length, config.cache_heads, config.head_dim)
  return KVCache(jnp.zeros(shape, config.jnp_dtype), jnp.zeros(shape, config.jnp_dtype))


def cache_length(cache: Cache) -> int:
  """Number of positions the cache can hold."""
  return cache.k_YxBxSxCxH.shape[2]


def rope_inv_freq(config: ModelConfig) -> np.ndarray:
  """Returns the [H // 2] inverse frequencies of RoPE, after Hugging Face's 'linear' or 'llama3' scaling."""
  h = config.head_dim
  inv_freq = 1.0 / (config.rope_theta**(np.arange(0, h, 2, dtype=np.float64) / h))
  s = config.rope_scaling
  if s.rope_type == 'linear':
    inv_freq = inv_freq / s.factor
  elif s.rope_type == 'llama3':
    # Long wavelengths are stretched by `factor`, short ones kept, the band between interpolated smoothly.
    wavelen = 2 * np.pi / inv_freq
    low_freq_wavelen = s.original_max_position_embeddings / s.low_freq_factor
    high_freq_wavelen = s.original_max_position_embeddings / s.high_freq_factor
    stretched = np.where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
        s.high_freq_factor - s.low_freq_factor)
    smoothed = (1 - smooth) * stretched / s.factor + smooth * stretched
    is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    inv_freq = np.where(is_medium, smoothed, stretched)
  return inv_freq.astype(np.float32)


def apply_rope(x_BxLxNxH: jax.Array, positions_BxL: jax.Array, inv_freq_h: np.ndarray) -> jax.Array:
  """Rotates each head's halves (HF's rotate_half layout, not interleaved) by position * frequency."""
  angles_BxLxh = positions_BxL[..., None].astype(jnp.float32) * inv_freq_h[None, None, :]
  angles_BxLx1xH = jnp.concatenate([angles_BxLxh, angles_BxLxh], axis=-1)[:, :, None, :]
  x = x_BxLxNxH.astype(jnp.float32)
  x1, x2 = jnp.split(x, 2, axis=-1)
  rotated = jnp.concatenate([-x2, x1], axis=-1)
  out = x * jnp.cos(angles_BxLx1xH) + rotated * jnp.sin(angles_BxLx1xH)
  return out.astype(x_BxLxNxH.dtype)


class RMSNorm(nn.Module):
  """Root-mean-square norm with a learned scale, computed in float32 like HF's LlamaRMSNorm."""

  eps: float
  dtype: jnp.dtype
  param_dtype: jnp.dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    weight = self.param('weight', nn.initializers.ones, (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return jnp.broadcast_to(weight.astype(self.dtype), x.shape) * normed.astype(self.dtype)


def _dense(config: ModelConfig, features: int, name: str, use_bias: bool = False) -> nn.Dense:
  return nn.Dense(
      features,
      use_bias=use_bias,
      dtype=config.jnp_dtype,
      param_dtype=config.jnp_param_dtype,
      kernel_init=nn.initializers.normal(config.initializer_range),
      name=name)


def _norm(config: ModelConfig, name: str) -> RMSNorm:
  return RMSNorm(config.rms_eps, config.jnp_dtype, config.jnp_param_dtype, name=name)


class Attention(nn.Module):
  """Grouped-query self-attention with RoPE, optional q/k/v biases (Qwen2) and q/k norms (Qwen3)."""

  config: ModelConfig
  block_write: bool = False  # See Transformer.block_write.

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array, positions_BxL: jax.Array, cache: Optional[KVCache],
               layer: Any) -> tuple[jax.Array, Optional[KVCache]]:
    """`cache` holds every layer; this one reads and writes its slice `layer` (an int, traced under nn.scan)."""
    c = self.config
    B, L, _ = x_BxLxD.shape
    N, K, H = c.n_heads, c.n_kv_heads, c.head_dim
    q_BxLxNxH = _dense(c, N * H, 'q_proj', c.qkv_bias)(x_BxLxD).reshape(B, L, N, H)
    k_BxLxKxH = _dense(c, K * H, 'k_proj', c.qkv_bias)(x_BxLxD).reshape(B, L, K, H)
    v_BxLxKxH = _dense(c, K * H, 'v_proj', c.qkv_bias)(x_BxLxD).reshape(B, L, K, H)
    if c.qk_norm:
      q_BxLxNxH = _norm(c, 'q_norm')(q_BxLxNxH)
      k_BxLxKxH = _norm(c, 'k_norm')(k_BxLxKxH)
    inv_freq = rope_inv_freq(c)
    q_BxLxNxH = apply_rope(q_BxLxNxH, positions_BxL, inv_freq)
    k_BxLxKxH = apply_rope(k_BxLxKxH, positions_BxL, inv_freq)
    C = c.cache_heads
    # Cache head j serves query heads j * (N // C) ..; it is key/value head j // kv_repeat, so the grouping of
    # query heads is unchanged.
    k_BxLxCxH = jnp.repeat(k_BxLxKxH, c.kv_repeat, axis=2) if c.kv_repeat > 1 else k_BxLxKxH
    v_BxLxCxH = jnp.repeat(v_BxLxKxH, c.kv_repeat, axis=2) if c.kv_repeat > 1 else v_BxLxKxH

    if cache is None:  # A full forward: attend within this call only.
      keys_BxSxCxH, values_BxSxCxH, key_pos_BxS = k_BxLxCxH, v_BxLxCxH, positions_BxL
      new_cache = None
    else:
      dtype = cache.k_YxBxSxCxH.dtype
      if self.block_write:  # One block at the same positions in every row: written in place.
        zero = jnp.int32(0)
        start = (jnp.asarray(layer, jnp.int32), zero, positions_BxL[0, 0].astype(jnp.int32), zero, zero)
        new_cache = KVCache(
            jax.lax.dynamic_update_slice(cache.k_YxBxSxCxH, k_BxLxCxH.astype(dtype)[None], start),
            jax.lax.dynamic_update_slice(cache.v_YxBxSxCxH, v_BxLxCxH.astype(dtype)[None], start))
      else:
        rows_Bx1 = jnp.arange(B)[:, None]
        # mode='drop': a position past the cache is dropped, never clamped onto a live slot.
        new_cache = KVCache(
            cache.k_YxBxSxCxH.at[layer, rows_Bx1, positions_BxL].set(k_BxLxCxH.astype(dtype), mode='drop'),
            cache.v_YxBxSxCxH.at[layer, rows_Bx1, positions_BxL].set(v_BxLxCxH.astype(dtype), mode='drop'))
      keys_BxSxCxH = new_cache.k_YxBxSxCxH[layer]
      values_BxSxCxH = new_cache.v_YxBxSxCxH[layer]
      S = keys_BxSxCxH.shape[1]
      key_pos_BxS = jnp.broadcast_to(jnp.arange(S), (B, S))

    q_BxLxCxGxH = q_BxLxNxH.reshape(B, L, C, N // C, H)
    scores_BxCxGxLxS = jnp.einsum(
        'blkgh,bskh->bkgls', q_BxLxCxGxH, keys_BxSxCxH.astype(q_BxLxCxGxH.dtype),
        preferred_element_type=jnp.float32) / np.sqrt(H).astype(np.float32)
    visible_BxLxS = key_pos_BxS[:, None, :] <= positions_BxL[:, :, None]
    scores_BxCxGxLxS = jnp.where(visible_BxLxS[:, None, None], scores_BxCxGxLxS, jnp.finfo(jnp.float32).min)
    probs_BxCxGxLxS = jax.nn.softmax(scores_BxCxGxLxS, axis=-1).astype(c.jnp_dtype)
    out_BxLxCxGxH = jnp.einsum('bkgls,bskh->blkgh', probs_BxCxGxLxS, values_BxSxCxH.astype(c.jnp_dtype))
    out_BxLxD = _dense(c, c.d_model, 'o_proj')(out_BxLxCxGxH.reshape(B, L, N * H))
    return out_BxLxD, new_cache


class MLP(nn.Module):
  """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
    c = self.config
    h_BxLxF = nn.silu(_dense(c, c.ffw_dim, 'gate_proj')(x_BxLxD)) * _dense(c, c.ffw_dim, 'up_proj')(x_BxLxD)
    return _dense(c, c.d_model, 'down_proj')(h_BxLxF)


class Block(nn.Module):
  """Pre-norm transformer block. `carry` is (x_BxLxD, cache or None, layer index), so the same module is the body
  of an `nn.scan` over layers and a step of the unrolled stack."""

  config: ModelConfig
  block_write: bool = False  # See Transformer.block_write.

  @nn.compact
  def __call__(self, carry, positions_BxL):
    x_BxLxD, cache, layer = carry
    attn_BxLxD, cache = Attention(self.config, self.block_write, name='self_attn')(
        _norm(self.config, 'input_layernorm')(x_BxLxD), positions_BxL, cache, layer)
    x_BxLxD = x_BxLxD + attn_BxLxD
    x_BxLxD = x_BxLxD + MLP(self.config, name='mlp')(_norm(self.config, 'post_attention_layernorm')(x_BxLxD))
    return (x_BxLxD, cache, layer + 1), None


class Transformer(nn.Module):
  """The LM. `__call__(tokens_BxL, positions_BxL, cache) -> (logits_BxLxV, hidden_BxLxD, new_cache)`.

  `logits_BxLxV` are float32; `hidden_BxLxD` is the final-normed residual stream the output head reads. With
  `cache=None` it is a plain causal forward pass over the call's own tokens and the returned cache is None.
  """

  config: ModelConfig
  # The caller's promise that positions_BxL is start + arange(L) in every row and that start + L fits the cache (a
  # prefill): the keys and values are then written as one block (dynamic_update_slice) instead of scattered row by
  # row. The values written are the same; for the scatter, XLA on TPUs carried the cache in another layout and copied
  # the whole cache into it and back in every layer of a prefill (experiments/tpu/README.md: hundreds of GiB).
  block_write: bool = False

  @nn.compact
  def __call__(self, tokens_BxL: jax.Array, positions_BxL: jax.Array,
               cache: Optional[Cache] = None) -> tuple[jax.Array, jax.Array, Optional[Cache]]:
    c = self.config
    embed = nn.Embed(
        c.vocab_size,
        c.d_model,
        dtype=c.jnp_dtype,
        param_dtype=c.jnp_param_dtype,
        embedding_init=nn.initializers.normal(c.initializer_range),
        name='embed_tokens')
    x_BxLxD = embed(tokens_BxL)
    if c.scan_layers:
      # The cache rides in the carry (not as scanned input/output) so each layer updates it in place.
      stack = nn.scan(Block, variable_axes={'params': 0}, split_rngs={'params': True}, in_axes=(nn.broadcast,),
                      length=c.n_layers)
      (x_BxLxD, cache, _), _ = stack(c, self.block_write, name='layers')((x_BxLxD, cache, jnp.int32(0)),
                                                                         positions_BxL)
    else:
      for i in range(c.n_layers):
        (x_BxLxD, cache, _), _ = Block(c, self.block_write, name=f'layers_{i}')((x_BxLxD, cache, i), positions_BxL)
    hidden_BxLxD = _norm(c, 'norm')(x_BxLxD)
    if c.tie_embeddings:
      logits_BxLxV = embed.attend(hidden_BxLxD)
    else:
      logits_BxLxV = _dense(c, c.vocab_size, 'lm_head')(hidden_BxLxD)
    return logits_BxLxV.astype(jnp.float32), hidden_BxLxD, cache


def init_params(config: ModelConfig, rng: jax.Array) -> dict:
  """Returns freshly initialised parameters (the 'params' collection) for `config`."""
  tokens_1x1 = jnp.zeros((1, 1), jnp.int32)
  return jax.jit(Transformer(config).init)(rng, tokens_1x1, tokens_1x1)['params']


def param_shapes(config: ModelConfig) -> dict:
  """Returns the parameter tree as jax.ShapeDtypeStruct leaves, without allocating memory."""
  tokens_1x1 = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  return jax.eval_shape(Transformer(config).init, jax.random.PRNGKey(0), tokens_1x1, tokens_1x1)['params']


def apply(config: ModelConfig, params: dict, tokens_BxL: jax.Array, positions_BxL: jax.Array,
          cache: Optional[Cache] = None, block_write: bool = False) -> tuple[jax.Array, jax.Array, Optional[Cache]]:
  """Pure forward: returns (logits_BxLxV float32, hidden_BxLxD, new cache or None). `block_write`: see
  Transformer.block_write (prefills)."""
  return Transformer(config, block_write).apply({'params': params}, tokens_BxL, positions_BxL, cache)


def stack_layers(params: dict, n_layers: int) -> dict:
  """Unrolled parameters ('layers_0' .. 'layers_{Y-1}') as scanned ones ('layers', each leaf with a leading [Y])."""
  out = {k: v for k, v in params.items() if not k.startswith('layers_')}
  out['layers'] = jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                                         *[params[f'layers_{i}'] for i in range(n_layers)])
  return out


def unstack_layers(params: dict) -> dict:
  """Scanned parameters ('layers' with a leading [Y] axis) as unrolled ones ('layers_0', ...); a no-op if unrolled."""
  if 'layers' not in params:
    return params
  out = {k: v for k, v in params.items() if k != 'layers'}
  n_layers = jax.tree_util.tree_leaves(params['layers'])[0].shape[0]
  for i in range(n_layers):
    out[f'layers_{i}'] = jax.tree_util.tree_map(lambda x: x[i], params['layers'])
  return out
