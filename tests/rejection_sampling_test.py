"""Speculative rejection sampling reproduces the target's (warped) distribution: chi-square tests over many seeds."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats

from cospec_jax.decoding import AutoregressiveDecoder, Block, DecodeSettings, RejectionSampling, Sampling, SpeculativeDecoder
from cospec_jax.models import apply, init_params
from tests import helpers

V = 6
N = 4000  # Rows, each an independent sample of the same prompt.
PROMPT = [1, 4, 2]


def _chi_square_p(samples_Nx2: np.ndarray, probs_VxV: np.ndarray) -> float:
  """p-value of the joint (x1, x2) counts against probs_VxV; cells expected below 5 are pooled."""
  counts = np.zeros((V, V))
  np.add.at(counts, (samples_Nx2[:, 0], samples_Nx2[:, 1]), 1)
  expected = probs_VxV * len(samples_Nx2)
  if np.any(counts[probs_VxV <= 0]):
    return 0.0  # A sample the distribution cannot produce.
  small = expected < 5
  obs = np.append(counts[~small], counts[small].sum())
  exp = np.append(expected[~small], expected[small].sum())
  if exp[-1] == 0:
    obs, exp = obs[:-1], exp[:-1]
  assert len(obs) >= 8, 'too few cells for a meaningful test: make the models less peaked'
  return _chisquare(obs, exp)


def _chisquare(observed, expected) -> float:
  expected = np.asarray(expected, np.float64)
  return scipy_stats.chisquare(observed, expected * np.sum(observed) / expected.sum()).pvalue


def _joint_probs(config, params, sampler) -> np.ndarray:
  """Exact p(x1, x2 | PROMPT) of the warped target, by enumerating x1."""
  prefix = jnp.asarray([PROMPT + [x1] for x1 in range(V)])
  logits, _, _ = apply(config, params, prefix, jnp.broadcast_to(jnp.arange(len(PROMPT) + 1), prefix.shape))
  p1 = np.asarray(sampler.probs(logits[0, len(PROMPT) - 1]))
  p2 = np.asarray(sampler.probs(logits[:, len(PROMPT)]))
  return p1[:, None] * p2


def _samples(generation) -> np.ndarray:
  c = generation.completions()
  assert all(len(x) == 2 for x in c)
  return np.stack(c)


@pytest.fixture(scope='module')
def models():
  config = helpers.tiny_config(V, initializer_range=0.1)
  return config, init_params(config, jax.random.PRNGKey(3)), init_params(config, jax.random.PRNGKey(4))


@pytest.mark.parametrize('sampler', [Sampling(1.0), Sampling(0.8, top_k=4, top_p=0.9)], ids=['plain', 'warped'])
@pytest.mark.parametrize('gamma', [1, 3])
def test_speculative_sampling_matches_target(models, sampler, gamma):
  config, target_params, draft_params = models
  settings = DecodeSettings(max_new_tokens=2)
  probs = _joint_probs(config, target_params, sampler)
  draft_probs = _joint_probs(config, draft_params, sampler)
  # The pair must disagree, or any sampler would pass.
  assert 0.5 * np.abs(probs - draft_probs).sum() > 0.2

  decoder = SpeculativeDecoder(config, config, RejectionSampling(sampler), gamma, settings)
  gen = decoder.generate(target_params, draft_params, [PROMPT] * N, jax.random.PRNGKey(gamma))
  p_value = _chi_square_p(_samples(gen), probs)
  assert p_value > 1e-3, p_value
  st = jax.device_get(gen.stats)
  assert 0 < st.accepted_B.sum() < st.proposed_B.sum()  # Both branches of the rule ran.

  # The same test rejects the draft's own samples: it can fail.
  draft_only = AutoregressiveDecoder(config, sampler, settings).generate(draft_params, [PROMPT] * N,
                                                                          jax.random.PRNGKey(0))
  assert _chi_square_p(_samples(draft_only), probs) < 1e-6


def test_autoregressive_sampling_matches_target(models):
  config, target_params, _ = models
  sampler = Sampling(0.8, top_k=4, top_p=0.9)
  gen = AutoregressiveDecoder(config, sampler, DecodeSettings(max_new_tokens=2)).generate(
      target_params, [PROMPT] * N, jax.random.PRNGKey(1))
  assert _chi_square_p(_samples(gen), _joint_probs(config, target_params, sampler)) > 1e-3


def test_rule_output_distribution_is_p():
  """At one position, over 40k vmapped seeds, the first committed token is distributed as p, whatever q is."""
  p_logits = jnp.log(jnp.asarray([0.5, 0.2, 0.15, 0.1, 0.05, 0.0 + 1e-9]))
  q_logits = jnp.log(jnp.asarray([0.05, 0.1, 0.1, 0.25, 0.3, 0.2]))
  rule = RejectionSampling(Sampling(1.0))

  def first_token(rng):
    draft_rng, rule_rng = jax.random.split(rng)
    d = jax.random.categorical(draft_rng, q_logits)
    block = Block(d[None, None], q_logits[None, None], jnp.stack([p_logits, q_logits])[None], jnp.zeros((1, 1, 1)),
                  jnp.zeros((1, 2, 1)), jnp.zeros((1,), jnp.int32), jnp.ones((1,), jnp.int32))
    v = rule(block, rule_rng)
    return jnp.where(v.n_accepted_B[0] > 0, d, v.next_token_B[0])

  tokens = jax.jit(jax.vmap(first_token))(jax.random.split(jax.random.PRNGKey(0), 40_000))
  counts = np.bincount(np.asarray(tokens), minlength=6)
  p = np.exp(np.asarray(p_logits))
  assert counts[5] <= 2
  assert _chisquare(counts[:5], p[:5]) > 1e-3


@pytest.mark.parametrize('top_k, top_p, kept', [(2, 1.0, {0, 1}), (0, 0.6, {0, 1}), (0, 0.4, {0}),
                                                 (3, 0.99, {0, 1, 2})])
def test_warping_keeps_the_right_tokens(top_k, top_p, kept):
  logits = jnp.log(jnp.asarray([0.4, 0.3, 0.2, 0.1]))
  probs = np.asarray(Sampling(1.0, top_k, top_p).probs(logits))
  assert {i for i in range(4) if probs[i] > 0} == kept
  np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-6)


@pytest.mark.parametrize('kwargs', [dict(temperature=0.0), dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5)])
def test_bad_sampling_settings_are_named(kwargs):
  with pytest.raises(ValueError, match=next(iter(kwargs))):
    Sampling(**kwargs)
