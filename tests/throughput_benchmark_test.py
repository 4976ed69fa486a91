"""The throughput benchmark (smoke): a long-tailed workload, static and continuous batching give the same tokens."""

import os
import sys

import numpy as np

from cospec_jax import throughput_benchmark
from cospec_jax.decoding import continuous

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs'))
import bench_throughput  # noqa: E402


def test_workload_is_long_tailed():
  _, budgets = throughput_benchmark.workload(256, 8, 32, 24, 0.8, 4, 192, 512, 0)
  assert budgets.min() >= 4 and budgets.max() <= 192
  assert budgets.max() >= 5 * np.median(budgets) and budgets.mean() > np.median(budgets)


def test_smoke_run(tmp_path):
  result = throughput_benchmark.run(bench_throughput.get_config('smoke'), str(tmp_path))
  assert os.path.exists(tmp_path / 'bench_throughput.json')
  assert [r['decoder'] for r in result['rows']] == ['target', 'SPD gamma=4']
  for row in result['rows']:
    assert row['identical'], row  # Greedy: continuous batching changes no token.
    assert row['static_tokens_per_s'] > 0 and row['continuous_tokens_per_s'] > 0
    assert row['packing_bound'] > 1.0  # The workload leaves static batching's rows idle.
  assert result['generated_tokens'] == sum(result['budgets'])


def test_schedule_steps_counts_small_workloads_by_hand():
  # Rows take prompts 0 and 1; prompt 1 is done after step 1 and its row takes prompt 2, then prompt 3 after step 2.
  assert continuous.schedule_steps([3, 1, 1, 1], 2, 4) == dict(static=4, continuous=3, refills=2,
                                                                refill_calls={1: 2})
  # Both rows free after step 5, one refill per step: the second row waits a step.
  assert continuous.schedule_steps([5, 5, 5, 5], 2, 1) == dict(static=10, continuous=11, refills=2,
                                                                refill_calls={1: 2})
  # refills_per_step 0 (DecodeSettings' default): every freed row takes a prompt at once, both in one 2-row call.
  assert continuous.schedule_steps([5, 5, 5, 5], 2, 0) == dict(static=10, continuous=10, refills=2,
                                                                refill_calls={2: 1})
  # Prefilling ahead into a stage of one row caps the refills at one per step, as refills_per_step 1 does.
  assert continuous.schedule_steps([5, 5, 5, 5], 2, 0, prefill_ahead=1) == dict(static=10, continuous=11, refills=2,
                                                                                 refill_calls={1: 2})
  # Three rows free after step 2 and two prompts wait: both in one 2-row call, the third row stays empty, and the
  # 4-step prompt ends the stream.
  assert continuous.schedule_steps([2, 2, 2, 4, 1, 1], 4, 0) == dict(static=5, continuous=4, refills=2,
                                                                      refill_calls={2: 1})


def test_schedule_steps_on_long_tailed_workloads_lies_between_packing_and_static():
  for seed in range(4):
    _, budgets = throughput_benchmark.workload(256, 8, 32, 24, 0.8, 4, 192, 512, seed)
    for batch_size in (8, 32):
      counts = continuous.schedule_steps(budgets, batch_size, batch_size)
      assert counts['refills'] == 256 - batch_size
      assert max(budgets.max(), -(-budgets.sum() // batch_size)) <= counts['continuous'] < counts['static']
