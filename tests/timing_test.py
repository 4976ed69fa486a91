"""The table's wall-clock protocol (evaluate.interleaved_rounds, evaluate.time_rows) on scripted passes: rounds
interleave the passes call by call in shuffled orders, each call counts its fastest round, and the time per step is
net of each call's one-step cost."""

import jax
import ml_collections
import numpy as np
import pytest

from cospec_jax import evaluate
from cospec_jax.decoding import Exact


def _scripted(name, seconds_RxC, steps_C, log):
  """A stand-in for compiled_pass's generator function: round r's call c takes seconds_RxC[r][c] (as reported) and
  ran steps_C[c] loop steps; every call is appended to `log` as it runs."""
  rounds = iter(seconds_RxC)

  def timed_calls():
    for c, seconds in enumerate(next(rounds)):
      log.append((name, c))
      yield {'completions': [np.asarray([c])], 'generated': 10 * steps_C[c], 'target_calls': steps_C[c],
             'loop_steps': steps_C[c], 'seconds': seconds}

  return timed_calls


def test_rounds_interleave_the_passes_call_by_call():
  log = []
  passes = [_scripted('a', [[1, 2, 3], [4, 5, 6]], [1, 1, 1], log), _scripted('b', [[7], [8]], [2], log),
            _scripted('c', [[1, 1], [9, 9]], [3, 3], log)]
  seconds_PxR, firsts, seconds_PxRxC = evaluate.interleaved_rounds(passes, 2)
  # Each turn runs every unfinished pass's next call, in an order that changes from turn to turn.
  turns = [log[0:3], log[3:5], log[5:6], log[6:9], log[9:11], log[11:12]]
  assert [sorted(t) for t in turns] == 2 * [[('a', 0), ('b', 0), ('c', 0)], [('a', 1), ('c', 1)], [('a', 2)]]
  orders = []  # Three one-call passes over 12 rounds: one turn a round; a fixed order would give one order.
  evaluate.interleaved_rounds([_scripted(name, [[1]] * 12, [1], orders) for name in 'xyz'], 12)
  assert len({tuple(name for name, _ in orders[i:i + 3]) for i in range(0, 36, 3)}) > 1
  np.testing.assert_array_equal(seconds_PxR, [[6, 15], [7, 8], [2, 18]])
  np.testing.assert_array_equal(seconds_PxRxC[0], [[1, 2, 3], [4, 5, 6]])
  assert firsts[0]['loop_steps'] == 3 and firsts[2]['generated'] == 60 and firsts[1]['seconds'] == 7
  assert [c.tolist() for c in firsts[0]['completions']] == [[0], [1], [2]]
  assert firsts[0]['seconds'] == 6  # The first round's calls, summed.


def test_each_call_counts_its_fastest_round_and_steps_are_net_of_the_first(monkeypatch):
  # Two calls per pass at each batch size; round 1 is slow for the first call, round 0 for the second.
  full = {'': [[2.0, 9.0], [8.0, 3.0]], '_batch1': [[1.0, 5.0], [4.0, 2.0]]}  # 5 and 3 steps per call.
  one_step = {'': [[1.0, 7.0], [6.0, 1.5]], '_batch1': [[0.5, 3.0], [2.0, 1.0]]}  # 1 step per call.
  log = []

  def fake_compiled_pass(method, target, draft, some, batch, *args, max_new=None, **kwargs):
    suffix = '' if batch == 4 else '_batch1'
    if max_new == 1:
      return _scripted((method.name, suffix, 1), one_step[suffix], [1, 1], log)
    return _scripted((method.name, suffix, None), full[suffix], [5, 3], log)

  monkeypatch.setattr(evaluate, 'compiled_pass', fake_compiled_pass)
  config = ml_collections.ConfigDict(dict(seed=0, rl=dict(gamma=2), table=dict(
      batch_size=4, timing=dict(problems=2, batch_problems=8, rounds=2))))
  methods = [(0, evaluate.Method('target-only', model='target')), (1, evaluate.Method('spd greedy', rule=Exact()))]
  target_row, spd_row = evaluate.time_rows(config, methods, None, None, [[1]] * 8, None, None, 0, 1)
  # The model-only row: no one-step pass; the sum of each call's fastest round.
  assert target_row['tokens_per_s'] == pytest.approx(80 / (2.0 + 3.0))
  assert target_row['seconds_per_step'] == pytest.approx(5.0 / 8) and 'seconds_one_step' not in target_row
  # The speculative row: (fastest full calls - fastest one-step calls) over the steps after each call's first.
  assert spd_row['seconds_one_step'] == pytest.approx(1.0 + 1.5)
  assert spd_row['seconds_per_step'] == pytest.approx((5.0 - 2.5) / (8 - 2))
  assert spd_row['seconds_per_step_gross'] == pytest.approx(5.0 / 8)
  assert spd_row['seconds_per_step_batch1'] == pytest.approx(((1.0 + 2.0) - (0.5 + 1.0)) / (8 - 2))
  # Round by round: each round's whole pass against its one-step pass.
  assert spd_row['seconds_per_step_rounds'] == pytest.approx([(11.0 - 8.0) / 6, (11.0 - 7.5) / 6])
  assert len(log) == 2 * 6 * 2  # Every pass's two calls in each of the two rounds.


_BACKEND_COMPILES = []  # Every XLA backend compile of this process, appended by one listener registered once.
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: _BACKEND_COMPILES.append(event) if 'backend_compile' in event else None)


@pytest.mark.parametrize('continuous', [False, True])
def test_a_compiled_pass_compiles_before_its_clock_and_decodes_as_the_decoder_does(continuous):
  """compiled_pass compiles with a call of budget 0 (it decodes nothing): its timed calls then compile nothing, for
  one-model and speculative methods, whole budgets and the one-step budget alike; and its completions are the
  decoders' own (the budgets it passes change no token)."""
  from cospec_jax.decoding import AutoregressiveDecoder, DecodeSettings, SpeculativeDecoder
  from tests import helpers
  target_config, target_params, draft_config, draft_params = helpers.tiny_pair(61, seed=7)
  target, draft = (target_config, target_params), (draft_config, draft_params)
  prompts = helpers.ragged_prompts(5, 61, seed=7)
  settings = DecodeSettings(max_new_tokens=12, eos_ids=(1,), pad_id=0)
  compiles = _BACKEND_COMPILES
  spd = evaluate.Method('spd greedy', rule=Exact())
  methods = [(evaluate.Method('target-only', model='target'), None), (spd, None), (spd, None if continuous else 1)]
  for method, budget in methods:
    calls = evaluate.compiled_pass(method, target, draft, prompts, 2, settings, 3, 0, continuous=continuous,
                                   max_new=budget)
    compiles.clear()
    decoded = evaluate.run_pass(calls())
    assert compiles == [], (method.name, budget, compiles)
    rng, buckets = jax.random.PRNGKey(0), (max(len(p) for p in prompts),)
    if method.model is not None:
      decoder = AutoregressiveDecoder(target_config, settings=settings)
      expected = [c for gen, n in decoder.generate_batches(target_params, prompts, 2, rng, buckets)
                  for c in gen.completions()[:n]]
    else:
      decoder = SpeculativeDecoder(target_config, draft_config, Exact(), 3, settings)
      expected = [c for gen, n in decoder.generate_in_batches(target_params, draft_params, prompts, 2, rng,
                                                              buckets=buckets, max_new=budget)
                  for c in gen.completions()[:n]]
    assert [c.tolist() for c in decoded['completions']] == [c.tolist() for c in expected], (method.name, budget)
    assert decoded['generated'] == sum(len(c) for c in expected) > 0
