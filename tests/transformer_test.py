"""The LM: cached decoding equals a full forward pass, causality, dtypes, and full-size shapes without memory."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from cospec_jax.models import ModelConfig, RopeScaling, apply, init_cache, init_params, param_shapes
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
    self.assertEqual(cache[0].k_BxSxKxH.dtype, jnp.bfloat16)
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
])
def test_bad_config_is_named(bad, match):
  with pytest.raises(ValueError, match=match):
    helpers.tiny_config(**bad)


def test_unknown_rope_type_is_named():
  with pytest.raises(ValueError, match="rope_type='yarn'"):
    RopeScaling('yarn')
