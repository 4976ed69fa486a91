"""The decode benchmark on a checkpoint pair (bfloat16 by default, on a (data, model) mesh of the 8 CPU devices), its
step profile, and the order its interleaved timer runs programs in."""

import sys
import os

import jax
import numpy as np

from cospec_jax import decode_benchmark
from cospec_jax.models import init_params, save_hf_checkpoint
from tests import helpers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs'))
import bench_decode  # noqa: E402


def test_checkpoint_pair_runs_in_bfloat16_on_a_mesh(tmp_path):
  tc, tp, _, dp = helpers.tiny_pair(vocab_size=64, noise=0.05)
  config = bench_decode.get_config('smoke')
  bench = config.bench
  bench.target_path = save_hf_checkpoint(str(tmp_path / 'target'), tc, jax.device_get(tp))
  bench.draft_path = save_hf_checkpoint(str(tmp_path / 'draft'), tc, jax.device_get(dp))
  bench.mesh.data, bench.mesh.model = 2, 4
  bench.batch_sizes = (2,)
  bench.hf_compare = False
  bench.max_new_tokens = 8
  result = decode_benchmark.run(config, str(tmp_path / 'bench'))
  assert result['dtype'] == 'bfloat16' and result['mesh'] == {'data': 2, 'model': 4}
  (row,) = result['rows']
  assert 1.0 <= row['tau'] <= 3.0 and row['spd_tokens_per_s'] > 0
  assert row['spd_stream_tokens_per_s'] > 0 and row['efficiency_stream_measured_verify'] > 0  # Refilled rows too.
  # eff(v) is the measured speedup over tau / (v + gamma c), for the refilled stream against its own tau.
  v_cost = row['v'] + row['gamma'] * row['c']
  assert np.isclose(row['efficiency_measured_verify'], row['speedup'] / row['ideal_speedup_measured_verify'])
  assert np.isclose(row['efficiency_stream_measured_verify'], row['speedup_stream'] * v_cost / row['tau_stream'])
  # One round (smoke): the round-by-round efficiency is the fastest-round one, its min = median = max.
  for key in ('efficiency_measured_verify', 'efficiency_stream_measured_verify'):
    assert np.allclose(row[f'{key}_rounds'], row[key], rtol=1e-9), (key, row)
  # Counted schedule caps: a fraction of the rows' steps that do work, 1 only when no row ever waits.
  assert 0 < row['schedule_cap'] <= 1 and 0 < row['stream_schedule_cap'] <= 1 and row['tau_stream'] >= 1
  mesh = decode_benchmark.bench_mesh(bench)
  _, placed, _, _ = decode_benchmark.load_pair(bench, mesh)
  q = placed['layers']['self_attn']['q_proj']['kernel']  # Scanned, bfloat16, split by whole heads.
  assert q.dtype == jax.numpy.bfloat16 and q.sharding.spec == jax.sharding.PartitionSpec(None, None, 'model')


def test_step_profile_times_every_part(tmp_path):
  """experiments/profile_step.py on the smoke pair: every part timed, the sum over the step's own parts only."""
  from cospec_jax import step_profile
  config = bench_decode.get_config('smoke')
  config.bench.repeats = 1
  (result,) = step_profile.run(config, str(tmp_path))['rows']
  ms = result['ms']
  parts = ['draft proposals (2 calls, catch-up included)', 'verify (3-token target call)', 'rule (Exact)', 'commit',
           'statistics', 'sources']
  derived = ['whole loop per step, prefill excluded', 'sum of parts']
  assert all(ms[k] > 0 for k in ms if k not in derived), ms  # Every part timed.
  # A difference of two timings: its sign is the machine's noise (a busy CI run read -0.58 ms), so only its definition
  # is checked, never a wall-clock figure.
  assert ms[derived[0]] == ms['whole loop per step'] - ms['prefill of both models (once per call)'] / result['steps']
  assert ms['sum of parts'] == sum(ms[k] for k in parts)  # Catch-up and the one-body pair are not counted twice.
  assert result['batch'] == 1 and result['gamma'] == 2 and result['steps'] >= 1
  assert (tmp_path / 'profile_step.json').exists()


def test_time_interleaved_compiles_first_then_runs_every_program_once_per_round():
  calls = []
  fns = {'a': lambda: calls.append('a') or 1, 'b': lambda: calls.append('b') or 2}
  seconds, outs = decode_benchmark.time_interleaved(fns, rounds=12, warmups={'b': lambda: calls.append('wb') or 0})
  assert calls[:2] == ['a', 'wb']  # The warmup stands in for b's compile run; then each program once per round...
  rounds = [tuple(calls[i:i + 2]) for i in range(2, len(calls), 2)]
  assert len(rounds) == 12 and set(rounds) == {('a', 'b'), ('b', 'a')}  # ...in an order shuffled round by round.
  assert outs == {'a': 1, 'b': 2} and set(seconds) == {'a', 'b'}
  assert all(len(s) == 12 and all(0 <= t < float('inf') for t in s) for s in seconds.values())  # One per round.
