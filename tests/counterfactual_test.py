"""Counterfactual forks: every recorded mismatch is a real one; the oracle rule replays a fork; the supervised fits
learn what their labels say."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cospec_jax import evaluate
from cospec_jax.decoding import DecodeSettings, Exact, Oracle, SpeculativeDecoder
from cospec_jax.decoding.cospec import N_SCALAR_FEATURES, ArbiterPolicy, init_policy
from cospec_jax.tasks import arithmetic
from cospec_jax.tasks.task import Arithmetic
from cospec_jax.tasks.tokenizer import CharTokenizer
from cospec_jax.train import counterfactual
from cospec_jax.train import data as data_lib
from tests import helpers

G, MAX_NEW = 3, 14


@pytest.fixture(scope='module')
def world():
  tokenizer = CharTokenizer()
  tc, tp, dc, dp = helpers.tiny_pair(tokenizer.vocab_size, noise=0.15)
  problems = [arithmetic.make_problem(0, "test", i) for i in range(6)]
  forks = counterfactual.collect((tc, tp), (dc, dp), Arithmetic(tokenizer, {}), problems, G, MAX_NEW, batch_size=4)
  return tokenizer, (tc, tp), (dc, dp), problems, forks


def test_forks_are_the_committed_mismatches(world):
  tokenizer, target, draft, problems, forks = world
  settings = DecodeSettings.for_tokenizer(tokenizer, MAX_NEW)
  prompts = [data_lib.prompt_ids(tokenizer, p['question']) for p in problems]
  gen = SpeculativeDecoder(target[0], draft[0], Exact(), G, settings).generate(target[1], draft[1], prompts)
  completions = gen.completions()
  # As many forks as greedy SPD counts mismatches, each at a committed position where the target chose otherwise.
  np.testing.assert_array_equal(np.bincount(forks.problem_N, minlength=len(problems)), gen.stats.mismatches_B)
  for i, j, token in zip(forks.problem_N, forks.answer_index_N, forks.draft_token_N):
    assert j < len(completions[i]) and completions[i][j] != token


def test_oracle_rule_replays_a_fork(world):
  """Keeping the draft at one fork, then exact SPD, is the fork's head plus the target's greedy continuation."""
  tokenizer, target, draft, problems, forks = world
  settings = DecodeSettings.for_tokenizer(tokenizer, MAX_NEW)
  prompts = [data_lib.prompt_ids(tokenizer, p['question']) for p in problems]
  first = {}
  for k, i in enumerate(forks.problem_N):
    first.setdefault(int(i), k)
  keep_at_P = np.full(len(problems), -1)
  for i, k in first.items():
    keep_at_P[i] = forks.answer_index_N[k]
  exact = SpeculativeDecoder(target[0], draft[0], Exact(), G, settings).generate(target[1], draft[1], prompts)
  got = SpeculativeDecoder(target[0], draft[0], Oracle(), G, settings).generate(
      target[1], draft[1], prompts, rule_params={'keep_at_B': jnp.asarray(keep_at_P)})
  for i, (completion, base) in enumerate(zip(got.completions(), exact.completions())):
    if i not in first:
      np.testing.assert_array_equal(completion, base)
      continue
    k = first[i]
    head = base[:forks.answer_index_N[k]].tolist() + [int(forks.draft_token_N[k])]
    expected = counterfactual.continue_forks(target, tokenizer, [prompts[i]], [head], MAX_NEW, 1)[0]
    assert completion.tolist() == expected
  assert len(first) > 0
  assert int(got.stats.kept_at_mismatch_B.sum()) == len(first)


def test_oracle_keep_at_takes_the_first_fix():
  forks = _synthetic_forks(np.zeros((5, 1)), fork_right=[False, True, True, True, False],
                           problem=[0, 0, 0, 1, 2], target_right=[False, True, False])
  forks.answer_index_N[:] = [3, 9, 5, 2, 1]
  np.testing.assert_array_equal(counterfactual.oracle_keep_at(forks), [5, -1, -1])


def test_forks_save_and_load(world, tmp_path):
  forks = world[-1]
  forks.save(str(tmp_path / 'forks.npz'))
  loaded = counterfactual.Forks.load(str(tmp_path / 'forks.npz'))
  for name in ('problem_N', 'scalars_NxF', 'fork_right_N', 'target_right_P'):
    np.testing.assert_array_equal(getattr(loaded, name), getattr(forks, name))
  assert not list(tmp_path.glob('*.tmp*'))


def _synthetic_forks(hidden_NxD, fork_right, problem, target_right):
  n = len(fork_right)
  return counterfactual.Forks(
      problem_N=np.asarray(problem), answer_index_N=np.zeros(n, int), draft_token_N=np.zeros(n, int),
      scalars_NxF=np.zeros((n, N_SCALAR_FEATURES), np.float32), target_hidden_NxD=np.asarray(hidden_NxD, np.float32),
      draft_hidden_NxD=np.zeros((n, 2), np.float32), fork_right_N=np.asarray(fork_right, bool),
      target_right_P=np.asarray(target_right, bool))


def test_fits_learn_their_labels():
  """Keeping the draft fixes wrong answers where hidden[0] > 0 and breaks right ones elsewhere; the policy learns to
  keep exactly there at lam 0, and the judge predicts harm exactly elsewhere."""
  rng = np.random.default_rng(0)
  n = 400
  hidden_NxD = rng.normal(size=(n, 4))
  helps = hidden_NxD[:, 0] > 0
  # Problem i is wrong for the target where keeping helps (the fork is right), right where it harms.
  forks = _synthetic_forks(hidden_NxD, fork_right=helps, problem=np.arange(n), target_right=~helps)
  policy = ArbiterPolicy(hidden=16, projection=4)
  params = init_policy(policy, 4, 2, jax.random.PRNGKey(0))
  params, loss = counterfactual.fit_policy(policy, params, forks, lams=(0.0,), speed_bonus=0.2, steps=300,
                                           learning_rate=1e-2)
  logit = policy.apply({'params': params}, jnp.asarray(forks.scalars_NxF), jnp.asarray(forks.target_hidden_NxD),
                       jnp.asarray(forks.draft_hidden_NxD))
  assert np.mean((np.asarray(logit) > 0) == helps) > 0.95, loss
  judge = counterfactual.fit_judge(forks, steps=300)
  harm_prob = jax.nn.sigmoid(jnp.asarray(hidden_NxD, jnp.float32) @ judge['w'] + judge['b'])
  assert np.mean((np.asarray(harm_prob) > 0.5) == ~helps) > 0.95


def test_keep_labels_trade_answers_for_speed():
  forks = _synthetic_forks(np.zeros((3, 1)), fork_right=[True, False, False], problem=[0, 1, 2],
                           target_right=[False, True, False])
  keep, weight = counterfactual.keep_labels(forks, lam=0.0, speed_bonus=0.2)
  np.testing.assert_array_equal(keep, [1, 0, 0])
  np.testing.assert_allclose(weight, [1, 1, 0])  # A fork that changes nothing teaches nothing at lam 0...
  keep, weight = counterfactual.keep_labels(forks, lam=1.0, speed_bonus=0.2)
  np.testing.assert_array_equal(keep, [1, 0, 1])  # ...and "keep, it is faster" at lam > 0.
  np.testing.assert_allclose(weight, [1.2, 0.8, 0.2])
  # With a deviation cost a keep must pay for its risk: "target" at lam 0 where nothing changes, "draft" once the
  # speed bonus outweighs the cost.
  keep, weight = counterfactual.keep_labels(forks, lam=0.0, speed_bonus=0.5, deviation_cost=0.1)
  np.testing.assert_array_equal(keep, [1, 0, 0])
  np.testing.assert_allclose(weight, [0.9, 1.1, 0.1], rtol=1e-6)
  keep, weight = counterfactual.keep_labels(forks, lam=1.0, speed_bonus=0.5, deviation_cost=0.1)
  np.testing.assert_array_equal(keep, [1, 0, 1])
  np.testing.assert_allclose(weight, [1.4, 0.6, 0.4], rtol=1e-6)


def test_interval_and_paired_test():
  lo, hi = evaluate.wilson_interval(322, 500)
  assert lo < 0.644 < hi and abs((hi - lo) - 0.083) < 0.005
  assert evaluate.wilson_interval(0, 10)[0] == 0.0
  gained, lost, p = evaluate.mcnemar([1, 1, 1, 0, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 0, 0, 0, 0, 0, 0])
  assert (gained, lost) == (9, 1) and abs(p - 22 / 1024) < 1e-9  # Two-sided exact binomial on 10 discordant pairs.
