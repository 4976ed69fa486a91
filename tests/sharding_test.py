"""Sharded over a device mesh == one device: decoding (greedy SPD, CoSpec with sampled actions, target-only) gives the
same tokens on meshes (8,1), (4,2), (2,4) of the 8 simulated CPU devices (tests/conftest.py), and the REINFORCE update
the same parameters within float tolerance. Everything here runs on those CPU devices, also on a host with an
accelerator (where jax.devices() would be the accelerator's), so the tests run everywhere instead of skipping."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from cospec_jax import sharding
from cospec_jax.decoding import AutoregressiveDecoder, CoSpec, DecodeSettings, Exact, SpeculativeDecoder
from cospec_jax.decoding.cospec import ArbiterPolicy, init_policy
from cospec_jax.train import reinforce
from tests import helpers

MESHES = [(8, 1), (4, 2), (2, 4)]
B, G, N_NEW = 8, 3, 12
CPUS = jax.devices('cpu')


def _mesh(data, model):
  return sharding.make_mesh(data, model, devices=CPUS)


@pytest.fixture(scope='module', autouse=True)
def on_cpu():
  """Arrays and computations without a mesh go to the first CPU device, whatever the default backend is."""
  assert len(CPUS) == 8, 'tests/conftest.py sets XLA_FLAGS=--xla_force_host_platform_device_count=8 before JAX starts'
  with jax.default_device(CPUS[0]):
    yield


@pytest.fixture(scope='module')
def pair():
  tc, tp, dc, dp = helpers.tiny_pair(vocab_size=64, noise=0.15)
  policy = ArbiterPolicy(hidden=16, projection=4)
  policy_params = init_policy(policy, tc.d_model, dc.d_model, jax.random.PRNGKey(5))
  prompts = helpers.ragged_prompts(B, 64, seed=3)
  return tc, tp, dc, dp, policy, policy_params, prompts


RNG = jax.random.PRNGKey(7)
SETTINGS = DecodeSettings(max_new_tokens=N_NEW, eos_ids=(1,))


def _rule_params(policy_params):
  return {'policy': policy_params, 'lam': jnp.linspace(0.0, 1.0, B)}


@pytest.fixture(scope='module')
def one_device(pair):
  """The unsharded generations every mesh is compared with: greedy SPD, CoSpec, target-only."""
  tc, tp, dc, dp, policy, policy_params, prompts = pair
  return (SpeculativeDecoder(tc, dc, Exact(), G, SETTINGS).generate(tp, dp, prompts),
          _cospec_decoder(tc, dc, policy).generate(tp, dp, prompts, RNG, rule_params=_rule_params(policy_params)),
          AutoregressiveDecoder(tc, settings=SETTINGS).generate(tp, prompts))


def _cospec_decoder(tc, dc, policy, mesh=None):
  return SpeculativeDecoder(tc, dc, CoSpec(Exact(), policy, sample_actions=True), G, SETTINGS, max_decisions=16,
                            mesh=mesh)


def _place(mesh, tp, dp):
  return (sharding.shard_params(tp, sharding.LLAMA_RULES, mesh), sharding.shard_params(dp, sharding.LLAMA_RULES, mesh))


def test_partition_specs_follow_rules_and_fall_back_when_uneven(pair):
  tc, tp, *_ = pair
  mesh = _mesh(2, 4)
  specs = sharding.partition_specs(tp, sharding.LLAMA_RULES, mesh)
  attn = specs['layers_0']['self_attn']
  assert attn['q_proj']['kernel'] == PartitionSpec(None, 'model')
  assert attn['o_proj']['kernel'] == PartitionSpec('model', None)
  assert specs['layers_0']['mlp']['down_proj']['kernel'] == PartitionSpec('model', None)
  assert specs['embed_tokens']['embedding'] == PartitionSpec('model', None)  # 64 rows over 4.
  assert specs['norm']['weight'] == PartitionSpec()
  odd = sharding.partition_specs({'embed_tokens': {'embedding': np.zeros((61, 32))}}, sharding.LLAMA_RULES, mesh)
  assert odd['embed_tokens']['embedding'] == PartitionSpec(None, None)  # 61 rows do not split 4 ways.
  placed = sharding.shard_params(tp, sharding.LLAMA_RULES, mesh)
  q = placed['layers_0']['self_attn']['q_proj']['kernel']
  assert q.sharding == NamedSharding(mesh, PartitionSpec(None, 'model'))
  assert q.addressable_shards[0].data.shape == (tc.d_model, tc.n_heads * tc.head_dim // 4)
  with pytest.raises(ValueError, match="No partition rule matches parameter 'embed_tokens/embedding'"):
    sharding.partition_specs(tp, [(r'proj', (None, 'model'))], mesh)


def test_mesh_errors_name_the_fix():
  with pytest.raises(ValueError, match='does not fit the'):
    sharding.make_mesh(4, 4, devices=CPUS[:8])
  with pytest.raises(ValueError, match='multiple of 4'):
    sharding.check_batch(6, sharding.make_mesh(4, 1, devices=CPUS[:4]))


@pytest.mark.parametrize('shape', MESHES)
def test_sharded_decoding_equals_one_device(pair, one_device, shape):
  tc, tp, dc, dp, policy, policy_params, prompts = pair
  want_spd, want_cospec, want_target = one_device
  mesh = _mesh(*shape)
  stp, sdp = _place(mesh, tp, dp)

  got = SpeculativeDecoder(tc, dc, Exact(), G, SETTINGS, mesh=mesh).generate(stp, sdp, prompts)
  assert got.tokens_BxT.sharding.spec[0] == 'data'  # The rows really were split.
  np.testing.assert_array_equal(np.asarray(got.tokens_BxT), np.asarray(want_spd.tokens_BxT))
  np.testing.assert_array_equal(np.asarray(got.sources_BxT), np.asarray(want_spd.sources_BxT))
  np.testing.assert_array_equal(np.asarray(got.stats.target_calls_B), np.asarray(want_spd.stats.target_calls_B))

  got = _cospec_decoder(tc, dc, policy, mesh).generate(stp, sdp, prompts, RNG,
                                                       rule_params=_rule_params(policy_params))
  np.testing.assert_array_equal(np.asarray(got.tokens_BxT), np.asarray(want_cospec.tokens_BxT))
  np.testing.assert_array_equal(np.asarray(got.records.keep_draft_BxG),
                                np.asarray(want_cospec.records.keep_draft_BxG))
  assert int(np.sum(want_cospec.stats.kept_at_mismatch_B)) > 0  # The arbiter acted, so its sampling was compared.
  np.testing.assert_allclose(np.asarray(got.records.scalars_BxGxF), np.asarray(want_cospec.records.scalars_BxGxF),
                             rtol=1e-4, atol=1e-4)

  got = AutoregressiveDecoder(tc, settings=SETTINGS, mesh=mesh).generate(stp, prompts)
  np.testing.assert_array_equal(np.asarray(got.tokens_BxT), np.asarray(want_target.tokens_BxT))


@pytest.mark.parametrize('shape', MESHES)
def test_sharded_reinforce_update_equals_one_device(pair, one_device, shape):
  policy, policy_params = pair[4], pair[5]
  rollouts = one_device[1]
  assert int(np.sum(rollouts.records.mask_BxG)) > 0
  advantages_B = jnp.linspace(-1.0, 1.0, B)
  optimizer = optax.adam(1e-2)
  copy = lambda tree: jax.tree_util.tree_map(jnp.array, tree)  # noqa: E731  (the update donates its inputs)
  want, _, want_metrics = reinforce.make_update(policy, optimizer, 0.01)(
      copy(policy_params), optimizer.init(policy_params), rollouts.records, advantages_B)
  mesh = _mesh(*shape)
  rows = sharding.batch_sharding(mesh)
  records = jax.tree_util.tree_map(lambda x: sharding.put(x, rows), rollouts.records)
  got, _, got_metrics = reinforce.make_update(policy, optimizer, 0.01, mesh)(
      sharding.on_mesh(copy(policy_params), mesh), sharding.on_mesh(optimizer.init(policy_params), mesh), records,
      sharding.put(advantages_B, rows))
  # It did update (the output layer: it starts at zero, so the first step moves only it).
  assert not np.allclose(want['Dense_2']['kernel'], policy_params['Dense_2']['kernel'])
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6),
                         got, want)
  np.testing.assert_allclose(float(got_metrics['loss']), float(want_metrics['loss']), rtol=1e-5, atol=1e-6)
