"""Paper-scale layouts on the 8 simulated CPU devices: scanned layers and whole-head sharding decode exactly as one
device does, kv heads are repeated so the KV cache splits over `model`, and chunked prefill equals one call."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from cospec_jax import sharding
from cospec_jax.decoding import AutoregressiveDecoder, DecodeSettings, Exact, SpeculativeDecoder
from cospec_jax.decoding import prompts as prompts_lib
from cospec_jax.models import init_params, transformer
from tests import helpers

CPUS = jax.devices('cpu')


def _mesh(data, model):
  assert len(CPUS) == 8, 'tests/conftest.py sets XLA_FLAGS=--xla_force_host_platform_device_count=8'
  return sharding.make_mesh(data, model, devices=CPUS)


def test_heads_split_whole_and_scanned_params_keep_their_layer_axis():
  config = helpers.tiny_config(n_heads=4, n_kv_heads=2, head_dim=8, scan_layers=True)  # q 4 heads, k/v 2.
  mesh = _mesh(2, 4)
  specs = sharding.partition_specs(transformer.param_shapes(config), sharding.LLAMA_RULES, mesh, config)
  attn = specs['layers']['self_attn']
  assert attn['q_proj']['kernel'] == PartitionSpec(None, None, 'model')  # 4 heads over 4.
  assert attn['o_proj']['kernel'] == PartitionSpec(None, 'model', None)
  # 2 kv heads of 8 cannot split 4 ways by whole heads; without the config the 16 columns would be cut mid-head.
  assert attn['k_proj']['kernel'] == PartitionSpec(None, None, None)
  assert sharding.partition_specs(transformer.param_shapes(config), sharding.LLAMA_RULES, mesh)['layers'][
      'self_attn']['k_proj']['kernel'] == PartitionSpec(None, None, 'model')
  assert specs['layers']['mlp']['down_proj']['kernel'] == PartitionSpec(None, 'model', None)
  assert specs['embed_tokens']['embedding'] == PartitionSpec(None, None)  # 61 rows do not split.
  # The cache holds each kv head twice, so its 4 heads split over model=4.
  assert sharding.kv_repeat(config, mesh) == 2
  assert sharding.for_mesh(config, mesh).cache_heads == 4
  assert sharding.kv_repeat(config, _mesh(4, 2)) == 1  # 2 kv heads over 2.
  assert sharding.kv_repeat(config.replace(n_heads=6, n_kv_heads=2), _mesh(2, 4)) == 1  # 6 q heads: no split.
  abstract = sharding.abstract_params(config, sharding.LLAMA_RULES, mesh)
  assert abstract['layers']['self_attn']['q_proj']['kernel'].sharding.spec == PartitionSpec(None, None, 'model')


@pytest.mark.parametrize('shape', [(2, 4), (1, 8)])
def test_scanned_whole_head_sharding_decodes_as_one_device(shape):
  """SPD and target-only on a mesh, with scanned layers placed head-aware and the cache's kv heads repeated, give the
  one-device unrolled model's tokens."""
  tc = helpers.tiny_config(vocab_size=64, n_heads=8, n_kv_heads=2, head_dim=8, n_layers=3)
  tp = init_params(tc, jax.random.PRNGKey(0))
  dp = helpers.perturbed(tp, jax.random.PRNGKey(1), 0.15)
  prompts = helpers.ragged_prompts(8, 64, seed=3)
  settings = DecodeSettings(max_new_tokens=10, eos_ids=(1,))
  want = SpeculativeDecoder(tc, tc, Exact(), 3, settings).generate(tp, dp, prompts)
  want_ar = AutoregressiveDecoder(tc, settings=settings).generate(tp, prompts)

  mesh = _mesh(*shape)
  sc = tc.replace(scan_layers=True)
  place = lambda p: sharding.shard_params(transformer.stack_layers(jax.device_get(p), 3), sharding.LLAMA_RULES,  # noqa
                                          mesh, sc)
  stp, sdp = place(tp), place(dp)
  decoder = SpeculativeDecoder(sc, sc, Exact(), 3, settings, mesh=mesh)
  assert decoder.target.kv_repeat == shape[1] // 2
  got = decoder.generate(stp, sdp, prompts)
  np.testing.assert_array_equal(np.asarray(got.tokens_BxT), np.asarray(want.tokens_BxT))
  got_ar = AutoregressiveDecoder(sc, settings=settings, mesh=mesh).generate(stp, prompts)
  np.testing.assert_array_equal(np.asarray(got_ar.tokens_BxT), np.asarray(want_ar.tokens_BxT))


def test_chunked_prefill_equals_one_call():
  """Prefill through the cache in chunks of 4 (two whole chunks scanned, then a remainder) writes the same cache."""
  config = helpers.tiny_config(scan_layers=True)
  params = jax.device_get(transformer.stack_layers(jax.device_get(init_params(config.replace(scan_layers=False),
                                                                             jax.random.PRNGKey(0))), 2))
  from cospec_jax.decoding.autoregressive import prefill
  tokens_BxP = jax.random.randint(jax.random.PRNGKey(1), (2, 11), 0, config.vocab_size)
  one = prefill(config, params, tokens_BxP, 16)
  chunked = jax.jit(lambda p, t: prefill(config, p, t, 16, chunk=4))(params, tokens_BxP)
  np.testing.assert_allclose(chunked.k_YxBxSxCxH, one.k_YxBxSxCxH, atol=1e-5)
  np.testing.assert_allclose(chunked.v_YxBxSxCxH, one.v_YxBxSxCxH, atol=1e-5)


@pytest.mark.parametrize('P, chunk', [(11, 4), (12, 4), (11, 0)])
def test_prefills_write_the_cache_as_blocks(P, chunk):
  """Prefills write each chunk's keys and values as one block (dynamic_update_slice), never a scatter: on TPUs XLA
  laid a scattered cache out for the scatter and copied the whole cache in every layer of a prefill
  (experiments/tpu/README.md). A refill whose last chunk would pass the cache keeps the scatter, which drops what
  lies past it (a block would be moved back to fit, over live slots)."""
  from cospec_jax.decoding.autoregressive import prefill, prefill_chunked
  config = helpers.tiny_config()
  params = init_params(config, jax.random.PRNGKey(0))
  tokens_BxP, lengths_B = jnp.zeros((2, P), jnp.int32), jnp.full((2,), P, jnp.int32)

  def refill_text(slots):
    return jax.jit(lambda p, c, t, n: prefill_chunked(config, p, c, t, chunk, n)).lower(
        params, transformer.init_cache(config, 2, slots), tokens_BxP, lengths_B).as_text()

  for text in (jax.jit(lambda p, t: prefill(config, p, t, 16, chunk=chunk)).lower(params, tokens_BxP).as_text(),
               refill_text(16)):
    assert 'dynamic_update_slice' in text and 'scatter' not in text
  passes = chunk and -(-P // chunk) * chunk > P  # The last chunk of a P-slot cache would pass its end.
  assert ('scatter' in refill_text(P)) == bool(passes)


def test_buckets_are_finer_than_powers_of_two():
  """An 8-shot GSM8K prompt of ~1,100 tokens pads to 1280, not 2048: four buckets per octave from 256 on."""
  assert prompts_lib.bucket_length(1100) == 1280
  assert prompts_lib.bucket_length(513) == 640
  assert prompts_lib.bucket_length(100) == 128
  assert prompts_lib.bucket_length(2048) == 2048
  buckets = prompts_lib.DEFAULT_BUCKETS
  assert all(b / a <= 1.25 for a, b in zip(buckets, buckets[1:]) if a >= 256)
