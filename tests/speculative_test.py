"""Greedy speculative decoding is lossless: it reproduces target-only greedy decoding token for token."""

import jax
import numpy as np
import pytest

from cospec_jax.decoding import AutoregressiveDecoder, DecodeSettings, Exact, SpeculativeDecoder
from cospec_jax.models import init_params
from tests import helpers

EOS = 3  # For the tests that need no particular stop pattern.


@pytest.fixture(scope='module')
def pair():
  return helpers.tiny_pair()


def _pick_eos(completions):
  """A token the target emits in some rows but not all, at different steps: so rows stop at different times."""
  best, best_score = None, -1
  for token in range(1, 61):
    firsts = [int(np.argmax(c == token)) for c in completions if token in c[:-1].tolist()]
    score = len(set(firsts)) if 0 < len(firsts) < len(completions) else -1
    if score > best_score:
      best, best_score = token, score
  return best


@pytest.fixture(scope='module')
def target_outputs(pair):
  """Target-only greedy completions for ragged prompts, per batch size, with an EOS id the rows hit at
  different steps: (prompts, completions, eos_id)."""
  tc, tp, _, _ = pair
  out = {}
  prompts5 = helpers.ragged_prompts(5, tc.vocab_size, seed=5)
  free = AutoregressiveDecoder(tc, settings=DecodeSettings(max_new_tokens=24)).generate(tp, prompts5).completions()
  eos = _pick_eos(free)
  # Batch 1: the row that runs longest before its EOS.
  longest = max(range(5), key=lambda b: (eos in free[b].tolist(), int(np.argmax(free[b] == eos))))
  for prompts in ([prompts5[longest]], prompts5):
    settings = DecodeSettings(max_new_tokens=24, eos_ids=(eos,))
    out[len(prompts)] = (prompts, AutoregressiveDecoder(tc, settings=settings).generate(tp, prompts).completions(),
                         eos)
  return out


@pytest.mark.parametrize('batch_size', [1, 5])
@pytest.mark.parametrize('gamma', [1, 3, 8])
def test_greedy_speculative_equals_target(pair, target_outputs, gamma, batch_size):
  tc, tp, dc, dp = pair
  prompts, expected, eos = target_outputs[batch_size]
  decoder = SpeculativeDecoder(tc, dc, Exact(), gamma, DecodeSettings(max_new_tokens=24, eos_ids=(eos,)))
  gen = decoder.generate(tp, dp, prompts)
  got = gen.completions()
  for b, (e, g) in enumerate(zip(expected, got)):
    np.testing.assert_array_equal(g, e, err_msg=f'row {b}, gamma={gamma}')
  stats = jax.device_get(gen.stats)
  # The noisy draft must be right sometimes and wrong sometimes, or this test proves little.
  assert 0 < stats.accepted_B.sum() < stats.proposed_B.sum()
  np.testing.assert_array_equal(stats.generated_B, [len(e) for e in expected])
  # Each target call commits its accepted draft tokens plus at most one target token.
  assert np.all(stats.generated_B - stats.accepted_B <= stats.target_calls_B)
  assert np.all(stats.generated_B - stats.accepted_B >= stats.target_calls_B - 1)
  np.testing.assert_array_equal(stats.proposed_B, gamma * stats.target_calls_B)


def test_rows_stop_at_eos_at_different_steps(pair, target_outputs):
  """The fixture's rows end in EOS at different lengths, and some run to the budget instead."""
  _, expected, eos = target_outputs[5]
  ends_in_eos = [e[-1] == eos for e in expected]
  assert any(ends_in_eos) and not all(ends_in_eos), [e.tolist() for e in expected]
  assert len({len(e) for e in expected if e[-1] == eos}) >= 2  # At different steps.
  for e in expected:
    assert eos not in e[:-1].tolist()


def test_identical_draft_accepts_everything(pair):
  tc, tp, _, _ = pair
  prompts = helpers.ragged_prompts(3, tc.vocab_size, seed=7)
  gen = SpeculativeDecoder(tc, tc, Exact(), 4, DecodeSettings(max_new_tokens=20)).generate(tp, tp, prompts)
  stats = jax.device_get(gen.stats)
  np.testing.assert_array_equal(stats.mismatches_B, 0)
  np.testing.assert_array_equal(stats.target_calls_B, 4)  # ceil(20 / (4 + 1)).
  np.testing.assert_array_equal(stats.generated_B, 20)


def test_per_row_budgets(pair):
  tc, tp, dc, dp = pair
  prompts = helpers.ragged_prompts(3, tc.vocab_size, seed=3)
  settings = DecodeSettings(max_new_tokens=12)
  tokens, lengths = helpers.pad(prompts)
  budgets = np.array([1, 5, 12], np.int32)
  gen = SpeculativeDecoder(tc, dc, Exact(), 3, settings)(tp, dp, tokens, lengths, jax.random.PRNGKey(0), budgets)
  ref = AutoregressiveDecoder(tc, settings=settings)(tp, tokens, lengths, jax.random.PRNGKey(0), budgets)
  for g, r, n in zip(gen.completions(), ref.completions(), budgets):
    assert len(g) == n
    np.testing.assert_array_equal(g, r)


def test_zero_budget_runs_no_step(pair):
  """`generate(max_new=0)` (the table's fixed-cost timing) prefills and decodes nothing: no loop step, no target call;
  budget 0 in one row of a batch leaves the other rows as they were."""
  tc, tp, dc, dp = pair
  prompts = helpers.ragged_prompts(3, tc.vocab_size, seed=3)
  decoder = SpeculativeDecoder(tc, dc, Exact(), 3, DecodeSettings(max_new_tokens=12))
  stats = jax.device_get(decoder.generate(tp, dp, prompts, max_new=0).stats)
  np.testing.assert_array_equal(stats.target_calls_B, 0)
  np.testing.assert_array_equal(stats.generated_B, 0)
  full = decoder.generate(tp, dp, prompts)
  assert np.all(jax.device_get(full.stats).target_calls_B > 0)
  tokens, lengths = helpers.pad(prompts)
  gen = decoder(tp, dp, tokens, lengths, jax.random.PRNGKey(0), np.array([0, 12, 12], np.int32))
  assert len(gen.completions()[0]) == 0 and int(jax.device_get(gen.stats).target_calls_B[0]) == 0
  for g, f in zip(gen.completions()[1:], full.completions()[1:]):
    np.testing.assert_array_equal(g, f)


def test_different_size_draft_is_still_lossless():
  tc = helpers.tiny_config(n_layers=3, d_model=48)
  dc = helpers.tiny_config(n_layers=1, d_model=16, n_heads=2, n_kv_heads=1)
  tp, dp = init_params(tc, jax.random.PRNGKey(0)), init_params(dc, jax.random.PRNGKey(1))
  prompts = helpers.ragged_prompts(4, tc.vocab_size, seed=11)
  settings = DecodeSettings(max_new_tokens=16, eos_ids=(EOS,))
  ref = AutoregressiveDecoder(tc, settings=settings).generate(tp, prompts).completions()
  got = SpeculativeDecoder(tc, dc, Exact(), 3, settings).generate(tp, dp, prompts).completions()
  for e, g in zip(ref, got):
    np.testing.assert_array_equal(g, e)
