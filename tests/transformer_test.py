"""The LM: cached decoding equals a full forward pass, causality, dtypes, and full-size shapes without memory."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from cospec_jax.models import ModelConfig, RopeScaling, apply, init_cache, init_params, param_shapes, transformer
from tests import helpers


def _full_positions(B, L):
  return jnp.broadcast_to(jnp.arange(L, dtype=jnp.int32), (B, L))


class CachedDecodingTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(
      dict(overrides={}),
      dict(overrides=dict(qkv_bias=True, tie_embeddings=True, model_type='qwen2')),
      dict(overrides=dict(qk_norm=True, head_dim=16, model_type='qwen3')),
      dict(overrides=dict(rope_theta=500.0, rope_scaling=RopeScaling('llama3', 8.0, 1.0, 4.0, 16))),
  )
  def test_incremental_matches_full_forward(self, overrides):
    config = helpers.tiny_config(**overrides)
    params = init_params(config, jax.random.PRNGKey(0))
    B, L = 3, 14
    tokens_BxL = jax.random.randint(jax.random.PRNGKey(1), (B, L), 0, config.vocab_size)
    full_BxLxV, full_hidden, _ = self.variant(lambda p, t: apply(config, p, t, _full_positions(B, L)))(
        params, tokens_BxL)

    step = self.variant(lambda p, t, pos, c: apply(config, p, t, pos, c))
    # Prefill 5, then a 4-token block, then single tokens: the three call shapes the decoders use.
    cache = init_cache(config, B, 20)
    chunks = [(0, 5), (5, 9)] + [(i, i + 1) for i in range(9, L)]
    outs, hiddens = [], []
    for a, b in chunks:
      logits, hidden, cache = step(params, tokens_BxL[:, a:b], _full_positions(B, b)[:, a:], cache)
      outs.append(logits)
      hiddens.append(hidden)
    np.testing.assert_allclose(jnp.concatenate(outs, 1), full_BxLxV, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(jnp.concatenate(hiddens, 1), full_hidden, atol=2e-5, rtol=1e-5)

  def test_per_row_offsets_and_stale_entries(self):
    """Rows at different offsets, over a cache holding garbage past each row's length, give the full forward."""
    config = helpers.tiny_config()
    params = init_params(config, jax.random.PRNGKey(0))
    B, L = 2, 12
    tokens_BxL = jax.random.randint(jax.random.PRNGKey(1), (B, L), 0, config.vocab_size)
    full_BxLxV, _, _ = apply(config, params, tokens_BxL, _full_positions(B, L))
    cache = init_cache(config, B, 16)
    garbage = jax.random.randint(jax.random.PRNGKey(2), (B, 16), 0, config.vocab_size)
    _, _, cache = apply(config, params, garbage, _full_positions(B, 16), cache)  # Stale everywhere.
    lengths = np.array([4, 7])
    _, _, cache = apply(config, params, tokens_BxL[:, :7], _full_positions(B, 7), cache)
    # Row 0 is at 4 (its slots 4..6 now hold tokens it will overwrite), row 1 at 7; both score 3 tokens.
    pos_Bx3 = jnp.asarray(lengths)[:, None] + jnp.arange(3)[None, :]
    toks_Bx3 = jnp.take_along_axis(tokens_BxL, pos_Bx3, axis=1)
    logits_Bx3xV, _, _ = apply(config, params, toks_Bx3, pos_Bx3, cache)
    for b in range(B):
      np.testing.assert_allclose(logits_Bx3xV[b], full_BxLxV[b, lengths[b]:lengths[b] + 3], atol=2e-5, rtol=1e-5)

  @parameterized.parameters(False, True)
  def test_block_write_equals_the_scatter(self, scan_layers):
    """A prefill's block written in place (`block_write`, what the prefills use) leaves the same cache, bit for bit,
    and the same logits as the per-row scatter, at a block that starts past 0 in a cache holding other values."""
    config = helpers.tiny_config(n_layers=3, scan_layers=scan_layers, kv_repeat=2)
    params = init_params(config, jax.random.PRNGKey(0))
    B, L = 3, 6
    cache = jax.tree_util.tree_map(lambda x: jax.random.normal(jax.random.PRNGKey(2), x.shape, x.dtype),
                                   init_cache(config, B, 16))
    tokens_BxL = jax.random.randint(jax.random.PRNGKey(1), (B, L), 0, config.vocab_size)
    positions_BxL = _full_positions(B, L) + 7
    call = jax.jit(lambda p, t, pos, c, block: apply(config, p, t, pos, c, block_write=block), static_argnums=4)
    scattered, written = call(params, tokens_BxL, positions_BxL, cache, False), call(
        params, tokens_BxL, positions_BxL, cache, True)
    chex.assert_trees_all_equal(written, scattered)
    assert not np.array_equal(written[2].k_YxBxSxCxH[:, :, 7:13], cache.k_YxBxSxCxH[:, :, 7:13])  # Written.

  def test_causal(self):
    """The logits at position i do not depend on tokens after i (the gradient to later embeddings is zero)."""
    config = helpers.tiny_config()
    params = init_params(config, jax.random.PRNGKey(0))
    L, i = 8, 3
    tokens_1xL = jax.random.randint(jax.random.PRNGKey(1), (1, L), 0, config.vocab_size)

    def logit_sum_at_i(embedding):
      p = dict(params, embed_tokens={'embedding': embedding})
      return apply(config, p, tokens_1xL, _full_positions(1, L))[0][0, i].sum()

    grad_VxD = jax.grad(logit_sum_at_i)(params['embed_tokens']['embedding'])
    later = np.asarray(tokens_1xL[0, i + 1:])
    earlier = np.asarray(tokens_1xL[0, :i + 1])
    for t in set(later.tolist()) - set(earlier.tolist()):
      np.testing.assert_array_equal(grad_VxD[t], 0.0)
    self.assertGreater(float(jnp.abs(grad_VxD[int(earlier[0])]).sum()), 0.0)

  def test_bfloat16_close_to_float32(self):
    config = helpers.tiny_config()
    params = init_params(config, jax.random.PRNGKey(0))
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 9), 0, config.vocab_size)
    ref, _, _ = apply(config, params, tokens, _full_positions(2, 9))
    bf16 = config.replace(dtype='bfloat16', param_dtype='bfloat16')
    params16 = jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), params)
    cache = init_cache(bf16, 2, 12)
    self.assertEqual(cache.k_YxBxSxCxH.dtype, jnp.bfloat16)
    out, hidden, _ = apply(bf16, params16, tokens, _full_positions(2, 9), cache)
    self.assertEqual(out.dtype, jnp.float32)
    self.assertEqual(hidden.dtype, jnp.bfloat16)
    scale = float(jnp.abs(ref).max())
    self.assertLess(float(jnp.abs(out - ref).max()), 0.05 * scale)


def test_full_size_shapes_without_memory():
  """A Llama-3-8B-shaped config builds its parameter tree abstractly, and the count matches the published size."""
  config = ModelConfig(vocab_size=128256, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8, head_dim=128,
                       ffw_dim=14336, rope_theta=500000.0, rope_scaling=RopeScaling('llama3', 8.0, 1.0, 4.0, 8192),
                       rms_eps=1e-5, dtype='bfloat16', param_dtype='bfloat16')
  shapes = param_shapes(config)
  n = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes))
  assert n == config.num_params() == 8_030_261_248
  assert shapes['layers_0']['self_attn']['k_proj']['kernel'].shape == (4096, 1024)
  scanned = param_shapes(config.replace(scan_layers=True))
  assert scanned['layers']['self_attn']['k_proj']['kernel'].shape == (32, 4096, 1024)
  assert sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(scanned)) == n


@pytest.mark.parametrize('overrides', [{}, dict(qkv_bias=True, model_type='qwen2'), dict(qk_norm=True,
                                                                                         model_type='qwen3')])
@pytest.mark.parametrize('kv_repeat', [1, 2])
def test_scanned_layers_and_repeated_kv_heads_equal_the_unrolled_model(overrides, kv_repeat):
  """The same weights, stacked under one nn.scan and with each kv head repeated in the cache, give the unrolled
  model's logits, as a full forward and through the cache (prefill, a block, one token)."""
  config = helpers.tiny_config(n_layers=3, **overrides)
  params = init_params(config, jax.random.PRNGKey(0))
  scanned = config.replace(scan_layers=True, kv_repeat=kv_repeat)
  stacked = transformer.stack_layers(jax.device_get(params), config.n_layers)
  assert jax.tree_util.tree_structure(stacked) == jax.tree_util.tree_structure(param_shapes(scanned))
  B, L = 2, 9
  tokens_BxL = jax.random.randint(jax.random.PRNGKey(1), (B, L), 0, config.vocab_size)
  ref_BxLxV, _, _ = apply(config, params, tokens_BxL, _full_positions(B, L))
  cache = init_cache(scanned, B, 12)
  assert cache.k_YxBxSxCxH.shape == (3, B, 12, config.n_kv_heads * kv_repeat, config.head_dim)
  outs = []
  for a, b in [(0, 4), (4, 8), (8, 9)]:
    logits, _, cache = jax.jit(lambda p, t, pos, c: apply(scanned, p, t, pos, c))(
        stacked, tokens_BxL[:, a:b], _full_positions(B, b)[:, a:], cache)
    outs.append(logits)
  np.testing.assert_allclose(jnp.concatenate(outs, 1), ref_BxLxV, atol=2e-5, rtol=1e-5)
  full, _, _ = apply(scanned, stacked, tokens_BxL, _full_positions(B, L))
  np.testing.assert_allclose(full, ref_BxLxV, atol=2e-5, rtol=1e-5)
  jax.tree_util.tree_map(np.testing.assert_array_equal, transformer.unstack_layers(stacked), jax.device_get(params))


def test_scanned_compile_does_not_grow_with_depth():
  """The scanned stack's lowered program holds one block: its text is the same size at 2 and at 12 layers (but for
  the digits of the layer count), while the unrolled one grows with depth."""
  def hlo_size(config):
    shapes = param_shapes(config)
    tokens = jax.ShapeDtypeStruct((1, 4), jnp.int32)
    return len(jax.jit(lambda p, t: apply(config, p, t, t)[0]).lower(shapes, tokens).as_text())

  base = helpers.tiny_config(scan_layers=True)
  assert abs(hlo_size(base.replace(n_layers=12)) - hlo_size(base.replace(n_layers=2))) < 0.01 * hlo_size(base)
  assert hlo_size(base.replace(scan_layers=False, n_layers=12)) > 3 * hlo_size(base.replace(scan_layers=False))


def test_num_params_matches_tree():
  for overrides in ({}, dict(qkv_bias=True, tie_embeddings=True), dict(qk_norm=True)):
    config = helpers.tiny_config(**overrides)
    n = sum(x.size for x in jax.tree_util.tree_leaves(init_params(config, jax.random.PRNGKey(0))))
    assert n == config.num_params()


@pytest.mark.parametrize('bad, match', [
    (dict(n_heads=6, n_kv_heads=4), 'multiple of n_kv_heads'),
    (dict(head_dim=7), 'even'),
    (dict(dtype='float16'), 'bfloat16'),
    (dict(d_model=0), 'positive'),
    (dict(kv_repeat=4), 'must divide n_heads=4'),
])
def test_bad_config_is_named(bad, match):
  with pytest.raises(ValueError, match=match):
    helpers.tiny_config(**bad)


def test_unknown_rope_type_is_named():
  with pytest.raises(ValueError, match="rope_type='yarn'"):
    RopeScaling('yarn')
