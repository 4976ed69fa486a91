"""CoSpec and the relaxed rules: an always-target arbiter is exact SPD; decision records hold exactly the mismatches; REINFORCE's
gradient matches the analytic one on a two-armed problem."""

import ast
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cospec_jax.decoding import (ArbiterPolicy, CoSpec, DecodeSettings, Exact, Fly, Judge, RejectionSampling,
                                 Sampling, SpeculativeDecoder, Threshold, TopK, make_rule)
from cospec_jax.decoding import rules
from cospec_jax.decoding.cospec import SCALAR_FEATURES, Decisions, init_policy
from cospec_jax.models import apply
from cospec_jax.train import reinforce
from tests import helpers

G = 3


@pytest.fixture(scope='module')
def pair():
  return helpers.tiny_pair(noise=0.15)


def _policy_params(config, bias):
  """Policy params whose logit is `bias` everywhere: always keep the draft (> 0) or always the target (< 0)."""
  params = init_policy(ArbiterPolicy(), config.d_model, config.d_model, jax.random.PRNGKey(0))
  params = jax.tree_util.tree_map(jnp.zeros_like, params)
  last = sorted(k for k in params if k.startswith('Dense_'))[-1]
  params[last]['bias'] = jnp.full_like(params[last]['bias'], bias)
  return params


@pytest.mark.parametrize('rule_params', ['none', 'always_target'])
def test_always_target_arbiter_is_exact_spd(pair, rule_params):
  tc, tp, dc, dp = pair
  prompts = helpers.ragged_prompts(4, tc.vocab_size, seed=2)
  settings = DecodeSettings(max_new_tokens=20, eos_ids=(5,))
  expected = SpeculativeDecoder(tc, dc, Exact(), G, settings).generate(tp, dp, prompts)
  params = None if rule_params == 'none' else {'policy': _policy_params(tc, -50.0), 'lam': 0.5}
  got = SpeculativeDecoder(tc, dc, CoSpec(Exact()), G, settings, max_decisions=32).generate(
      tp, dp, prompts, rule_params=params)
  for e, g in zip(expected.completions(), got.completions()):
    np.testing.assert_array_equal(g, e)
  e_stats, g_stats = jax.device_get((expected.stats, got.stats))
  np.testing.assert_array_equal(g_stats.mismatches_B, e_stats.mismatches_B)
  np.testing.assert_array_equal(g_stats.kept_at_mismatch_B, 0)
  assert e_stats.mismatches_B.sum() > 0
  # One decision per block that ended at a mismatch, each saying "target".
  np.testing.assert_array_equal(got.n_records_B, e_stats.mismatches_B)
  records = jax.device_get(got.records)
  np.testing.assert_array_equal(records.mask_BxG.sum(1), e_stats.mismatches_B)
  assert not np.any(records.keep_draft_BxG & records.mask_BxG)


def test_always_keep_records_exactly_the_mismatches(pair):
  """Keeping every draft token, the committed text is blocks of G draft tokens plus a bonus; the recorded decisions
  are exactly the draft positions where the target's argmax (recomputed by a full forward pass) differs."""
  tc, tp, dc, dp = pair
  prompts = helpers.ragged_prompts(3, tc.vocab_size, seed=4, low=3)
  n_new = 4 * (G + 1)  # Whole blocks only, so nothing recorded is cut off by the budget.
  decoder = SpeculativeDecoder(tc, dc, CoSpec(Exact()), G, DecodeSettings(max_new_tokens=n_new), max_decisions=64)
  gen = decoder.generate(tp, dp, prompts, rule_params={'policy': _policy_params(tc, 50.0), 'lam': 0.0})
  stats, records = jax.device_get((gen.stats, gen.records))
  np.testing.assert_array_equal(stats.accepted_B, 4 * G)
  for b, (prompt, completion) in enumerate(zip(prompts, gen.completions())):
    seq = jnp.asarray([list(prompt) + completion.tolist()])
    target_next = np.asarray(jnp.argmax(apply(tc, tp, seq, jnp.arange(seq.shape[1])[None, :])[0][0], -1))
    expected = [j for j in range(n_new) if j % (G + 1) != G and completion[j] != target_next[len(prompt) + j - 1]]
    assert len(expected) > 0
    assert stats.mismatches_B[b] == stats.kept_at_mismatch_B[b] == len(expected) == gen.n_records_B[b]
    # The recorded features say the same: the draft token is not the target's choice there.
    i = SCALAR_FEATURES.index
    filled = records.scalars_BxGxF[b][records.mask_BxG[b]]
    assert np.all(filled[:, i('target_logp_draft')] < filled[:, i('target_logp_target')])


def test_sampling_base_with_always_target_is_rejection_sampling(pair):
  """At a rejection the arbiter may keep the draft; when it never does, CoSpec is rejection sampling, draw for draw."""
  tc, tp, dc, dp = pair
  prompts = [[7, 8, 9]] * 6
  settings = DecodeSettings(max_new_tokens=10)
  base = RejectionSampling(Sampling(0.9))
  rng = jax.random.PRNGKey(3)
  expected = SpeculativeDecoder(tc, dc, base, G, settings).generate(tp, dp, prompts, rng)
  params = {'policy': _policy_params(tc, -50.0), 'lam': 0.0}
  got = SpeculativeDecoder(tc, dc, CoSpec(base, sample_actions=True), G, settings).generate(
      tp, dp, prompts, rng, rule_params=params)
  for e, g in zip(expected.completions(), got.completions()):
    np.testing.assert_array_equal(g, e)
  assert len({tuple(c) for c in got.completions()}) > 1  # Rows drew different samples.
  # Always keeping instead: every rejection is overruled, so all drafted tokens are accepted.
  keep = SpeculativeDecoder(tc, dc, CoSpec(base, sample_actions=True), G, settings).generate(
      tp, dp, prompts, rng, rule_params={'policy': _policy_params(tc, 50.0), 'lam': 0.0})
  st = jax.device_get(keep.stats)
  assert st.kept_at_mismatch_B.sum() == st.mismatches_B.sum() > 0
  np.testing.assert_array_equal(st.accepted_B, 8)  # Blocks of 3 drafts + a bonus: 3 + 3 + the 2 left of 10.


def test_reinforce_gradient_matches_analytic_on_two_arms():
  """One decision per rollout; reward 1 for "keep draft", 0.2 for "target". E[reward] = 0.2 + 0.8 * sigmoid(z)."""
  policy = ArbiterPolicy(hidden=8, projection=2)
  params = init_policy(policy, 3, 2, jax.random.PRNGKey(1))
  params = jax.tree_util.tree_map(lambda x: x + 0.3 * jax.random.normal(jax.random.PRNGKey(2), x.shape), params)
  scalars_1x1xF = jnp.linspace(-1, 1, len(SCALAR_FEATURES))[None, None]
  th, dh = jnp.ones((1, 1, 3)), -jnp.ones((1, 1, 2))

  def keep_prob(p):
    return jax.nn.sigmoid(policy.apply({'params': p}, scalars_1x1xF, th, dh))[0, 0]

  analytic = jax.grad(lambda p: 0.2 + 0.8 * keep_prob(p))(params)
  P, K = 1000, 40
  keep_PxK = jax.random.uniform(jax.random.PRNGKey(3), (P, K)) < keep_prob(params)
  rewards_PxK = jnp.where(keep_PxK, 1.0, 0.2)
  advantages = reinforce.leave_one_out_advantages(rewards_PxK).reshape(-1)
  B = P * K
  decisions = Decisions(jnp.broadcast_to(scalars_1x1xF, (B, 1, len(SCALAR_FEATURES))), jnp.broadcast_to(th, (B, 1, 3)),
                        jnp.broadcast_to(dh, (B, 1, 2)), keep_PxK.reshape(B, 1), jnp.ones((B, 1), bool),
                        jnp.zeros((B, 1), jnp.int32), jnp.zeros((B, 1), jnp.int32))
  grads = jax.grad(lambda p: -reinforce.reinforce_loss(p, policy, decisions, advantages, 0.0)[0])(params)
  flat_a = jnp.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(analytic)])
  flat_g = jnp.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(grads)])
  # The leave-one-out baseline does not depend on a rollout's own action, so the estimate is unbiased.
  cosine = jnp.dot(flat_a, flat_g) / (jnp.linalg.norm(flat_a) * jnp.linalg.norm(flat_g))
  assert cosine > 0.99, cosine
  np.testing.assert_allclose(jnp.linalg.norm(flat_g), jnp.linalg.norm(flat_a), rtol=0.05)


def test_leave_one_out_needs_two_rollouts():
  with pytest.raises(ValueError, match='K=1'):
    reinforce.leave_one_out_advantages(jnp.ones((3, 1)))
  np.testing.assert_allclose(reinforce.leave_one_out_advantages(jnp.array([[1.0, 0.0, 0.0]])),
                             [[1.0, -0.5, -0.5]])


def _judge(harm_logit):
  return {'w': jnp.zeros((32,)), 'b': jnp.asarray(harm_logit, jnp.float32)}


@pytest.mark.parametrize('rule, rule_params, lossless', [
    (TopK(1), None, True), (TopK(3), None, False), (Threshold(1.0, 1.0), None, True),
    (Threshold(0.3, 0.01), None, False), (Fly(min_entropy=1e9), None, True), (Fly(0.0, window=1), None, False),
    (Judge(), _judge(10.0), True), (Judge(), _judge(-10.0), False)])
def test_relaxed_rules(pair, rule, rule_params, lossless):
  """Settings that never relax (top-1, unreachable confidence or entropy, a judge that calls every mismatch harmful)
  are exact SPD; looser ones keep draft tokens the target rejects."""
  tc, tp, dc, dp = pair
  prompts = helpers.ragged_prompts(4, tc.vocab_size, seed=6)
  settings = DecodeSettings(max_new_tokens=20)
  exact = SpeculativeDecoder(tc, dc, Exact(), G, settings).generate(tp, dp, prompts)
  got = SpeculativeDecoder(tc, dc, rule, G, settings).generate(tp, dp, prompts, rule_params=rule_params)
  st = jax.device_get(got.stats)
  same = all(np.array_equal(a, b) for a, b in zip(exact.completions(), got.completions()))
  if lossless:
    assert same and st.kept_at_mismatch_B.sum() == 0
  else:
    assert st.kept_at_mismatch_B.sum() > 0 and not same


def test_rules_by_name():
  assert isinstance(make_rule('topk', k=2), TopK)
  assert isinstance(make_rule('threshold'), Threshold)
  assert isinstance(make_rule('fly', window=3), Fly)
  with pytest.raises(ValueError, match="'medusa'"):
    make_rule('medusa')
  with pytest.raises(ValueError, match='k=0'):
    TopK(0)
  with pytest.raises(ValueError, match='window=0'):
    Fly(window=0)


def _imported_modules(module) -> set:
  """Every cospec_jax.decoding module `module`'s source imports, at top level or inside a function."""
  names = set()
  for node in ast.walk(ast.parse(inspect.getsource(module))):
    if isinstance(node, ast.ImportFrom) and node.module:
      names |= {node.module} | {f'{node.module}.{a.name}' for a in node.names}
    elif isinstance(node, ast.Import):
      names |= {a.name for a in node.names}
  return {n.rsplit('.', 1)[-1] for n in names if n.startswith('cospec_jax.decoding.')}


def test_rule_modules_import_no_circle():
  """The registry sits above the rule families: rules.py imports none of them, and they never import the registry."""
  from cospec_jax.decoding import cospec, registry, relaxed  # pylint: disable=import-outside-toplevel
  assert not _imported_modules(rules) & {'cospec', 'relaxed', 'registry'}
  for module in (cospec, relaxed):
    assert 'registry' not in _imported_modules(module), module.__name__
  assert {'cospec', 'relaxed', 'rules'} <= _imported_modules(registry)
  assert set(registry.RULES) >= {'exact', 'rejection_sampling', 'topk', 'threshold', 'fly', 'judge', 'oracle', 'cospec'}


def test_fly_needs_the_target_back_in_step():
  """Fly keeps a rejected draft token only where the target is uncertain and agrees with the next `window` draft
  tokens inside the block."""
  V, G_ = 5, 4
  draft_BxG = jnp.array([[1, 2, 3, 4], [1, 2, 3, 4]])
  # Target argmax per position: row 0 disagrees at 0 only; row 1 disagrees at 0 and 2.
  argmax_BxG1 = jnp.array([[0, 2, 3, 4, 0], [0, 2, 0, 4, 0]])
  logits_BxG1xV = jax.nn.one_hot(argmax_BxG1, V) * 0.5  # Nearly flat: entropy ~ log(5) - small.
  block = rules.Block(draft_BxG, jnp.zeros((2, G_, V)), logits_BxG1xV, jnp.zeros((2, G_, 1)), jnp.zeros((2, G_ + 1, 1)),
                      jnp.zeros((2,), jnp.int32), jnp.full((2,), 10, jnp.int32))
  np.testing.assert_array_equal(Fly(0.5, window=2).overrides(block), [[1, 0, 0, 0], [0, 0, 0, 0]])
  np.testing.assert_array_equal(Fly(0.5, window=3).overrides(block), [[1, 0, 0, 0], [0, 0, 0, 0]])
  np.testing.assert_array_equal(Fly(0.5, window=4).overrides(block), [[0, 0, 0, 0], [0, 0, 0, 0]])  # Past G.
  np.testing.assert_array_equal(Fly(0.5, window=1).overrides(block), [[1, 0, 0, 0], [1, 0, 1, 0]])
  np.testing.assert_array_equal(Fly(2.0, window=1).overrides(block), np.zeros((2, 4)))  # Not uncertain enough.


@pytest.mark.parametrize('name, settings', [
    ('topk', [{'k': 1}, {'k': 2}, {'k': 3}]),
    ('threshold', [{'draft_confidence': 0.2, 'target_floor': 0.1}, {'draft_confidence': 0.5, 'target_floor': 0.3}]),
    ('fly', [{'min_entropy': 0.5, 'window': 1}, {'min_entropy': 1.2, 'window': 2}]),
    ('judge', [{'max_harm': 0.3}, {'max_harm': 0.7}])])
def test_settings_passed_as_rule_params_equal_fields(name, settings):
  """A sweep passes a relaxed rule's settings as traced rule_params (one compile per family); each must decide as the
  rule built with that setting does. The target logits hold ties, where top-k's k-th value is shared."""
  B, G_, V, D = 3, 4, 6, 8
  keys = jax.random.split(jax.random.PRNGKey(7), 4)
  target_logits = jnp.round(jax.random.normal(keys[0], (B, G_ + 1, V)) * 2) / 2  # Coarse: many ties.
  block = rules.Block(jax.random.randint(keys[1], (B, G_), 0, V), jax.random.normal(keys[2], (B, G_, V)),
                      target_logits, jnp.zeros((B, G_, D)), jax.random.normal(keys[3], (B, G_ + 1, D)),
                      jnp.zeros((B,), jnp.int32), jnp.full((B,), 10, jnp.int32))
  head = {'w': jnp.linspace(-1, 1, D), 'b': jnp.asarray(0.1)}
  traced = jax.jit(lambda b, p: make_rule(name).overrides(b, p))
  decisions = []
  for s in settings:
    fixed = make_rule(name, **s).overrides(block, head if name == 'judge' else None)
    got = traced(block, {**(head if name == 'judge' else {}), **s})
    np.testing.assert_array_equal(got, fixed)
    decisions.append(np.asarray(got))
  assert any(not np.array_equal(decisions[0], d) for d in decisions[1:])  # The settings matter here.


def test_scalar_features_match_their_definitions():
  """The one-pass features equal the textbook formulas: log-probabilities of both candidates under both models,
  entropies, top-2 margins (with ties), positions and lam."""
  from cospec_jax.decoding.cospec import SCALAR_FEATURES, scalar_features
  B, G_, V = 3, 4, 7
  keys = jax.random.split(jax.random.PRNGKey(3), 3)
  target_logits = jnp.round(jax.random.normal(keys[0], (B, G_ + 1, V)) * 2) / 2  # Coarse: ties at the top.
  draft_logits = jax.random.normal(keys[1], (B, G_, V))
  block = rules.Block(jax.random.randint(keys[2], (B, G_), 0, V), draft_logits, target_logits,
                      jnp.zeros((B, G_, 2)), jnp.zeros((B, G_ + 1, 2)), jnp.array([0, 3, 5]), jnp.full((B,), 10))
  got = np.asarray(scalar_features(block, jnp.array([0.0, 0.5, 1.0])))
  t_logp, d_logp = jax.nn.log_softmax(target_logits[:, :G_]), jax.nn.log_softmax(draft_logits)
  t_tok = jnp.argmax(target_logits[:, :G_], -1)
  at = lambda logp, tok: np.take_along_axis(np.asarray(logp), np.asarray(tok)[..., None], -1)[..., 0]  # noqa: E731
  margin = lambda logp: np.diff(np.sort(np.asarray(logp), -1)[..., -2:], axis=-1)[..., 0]  # noqa: E731
  entropy = lambda logp: -np.sum(np.exp(logp) * logp, -1)  # noqa: E731
  expected = {'target_logp_draft': at(t_logp, block.draft_tokens_BxG), 'target_logp_target': at(t_logp, t_tok),
              'draft_logp_draft': at(d_logp, block.draft_tokens_BxG), 'draft_logp_target': at(d_logp, t_tok),
              'target_entropy': entropy(t_logp), 'draft_entropy': entropy(d_logp), 'target_margin': margin(t_logp),
              'draft_margin': margin(d_logp), 'block_position': np.tile(np.arange(G_) / G_, (B, 1)),
              'answer_position': (np.array([0, 3, 5])[:, None] + np.arange(G_)) / 10,
              'lam': np.repeat([[0.0], [0.5], [1.0]], G_, 1)}
  assert (expected['target_margin'] == 0).any()  # A tie at the top: margin 0.
  for i, name in enumerate(SCALAR_FEATURES):
    np.testing.assert_allclose(got[..., i], expected[name], atol=1e-5, err_msg=name)
