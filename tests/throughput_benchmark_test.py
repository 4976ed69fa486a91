"""The throughput benchmark (smoke): a long-tailed workload, static and continuous batching give the same tokens."""

import os
import sys

import numpy as np

from cospec_jax import throughput_benchmark

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
