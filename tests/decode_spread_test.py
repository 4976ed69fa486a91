"""The decode benchmark's spread over fresh processes: its summary, its runs, resuming, and refusing to mix runs."""

import json
import os
import subprocess

import numpy as np
import pytest

from cospec_jax import decode_spread


def _result(effs, refilled=None, hf=None, cap=None):
  rows = []
  for i, (batch, gamma) in enumerate(((1, 2), (1, 4), (8, 4))):
    row = dict(batch=batch, gamma=gamma, efficiency_measured_verify=effs[i])
    if batch > 1 and refilled is not None:
      row['efficiency_stream_measured_verify'] = refilled
    if batch == 1 and hf is not None:
      row['ours_over_hf_assisted'] = hf
    if batch == 1 and cap is not None:
      row['ours_over_hf_cap'] = cap
    rows.append(row)
  return dict(rows=rows)


def test_summary_takes_min_median_max_and_counts_runs_at_each_bar():
  results = [_result([0.97, 0.94, 0.80], refilled=0.90, hf=2.0, cap=2.1),
             _result([0.99, 0.96, 0.70], refilled=0.84, hf=1.4, cap=1.45),
             _result([0.93, 0.95, 0.86], refilled=0.88, hf=3.0, cap=3.2)]
  rows = decode_spread.summarize(results)
  b1g2, b1g4, b8g4 = rows
  assert b1g2['efficiency_measured_verify'] == [0.93, 0.97, 0.99] and b1g2['efficiency_measured_verify_at_bar'] == 2
  assert b1g4['efficiency_measured_verify'] == [0.94, 0.95, 0.96] and b1g4['efficiency_measured_verify_at_bar'] == 2
  assert b8g4['efficiency_measured_verify_at_bar'] == 1  # The batched bar is 0.85.
  assert b8g4['efficiency_stream_measured_verify'] == [0.84, 0.88, 0.90]
  assert b8g4['efficiency_stream_measured_verify_at_bar'] == 2
  assert b1g2['ours_over_hf_assisted_at_bar'] == 2 and 'ours_over_hf_assisted' not in b8g4
  # The cap is read against the HF bar too (1.5): the runs whose calls allow it at all.
  assert b1g2['ours_over_hf_cap'] == [1.45, 2.1, 3.2] and b1g2['ours_over_hf_cap_at_bar'] == 2
  table = decode_spread.format_table(rows)
  assert 'ours/HF cap' in table and '2.10 (1.45-3.20) [2/3]' in table
  # Every gamma of a batch at once: at batch 1 run 0 misses gamma 4 and run 2 gamma 2; at batch 8 only run 2 passes.
  assert decode_spread.runs_meeting(results, 'efficiency_measured_verify', 1) == 1
  assert decode_spread.runs_meeting(results, 'efficiency_measured_verify', 8) == 1
  assert 'B | gamma' in decode_spread.format_table(rows)


def test_runs_of_different_grids_are_refused():
  other = dict(rows=[dict(batch=1, gamma=8, efficiency_measured_verify=1.0)])
  with pytest.raises(ValueError, match='different grids'):
    decode_spread.summarize([_result([1.0, 1.0, 1.0]), other])


def test_spread_runs_fresh_processes_with_the_overrides_and_resumes(tmp_path, monkeypatch):
  args = ['--config=configs/bench_decode.py:smoke', '--config.bench.hf_compare=False',
          '--config.bench.max_new_tokens=6', '--config.bench.repeats=1']
  monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  summary = decode_spread.run(args, str(tmp_path), runs=2)
  runs = [json.load(open(tmp_path / f'run_{k}' / 'bench_decode.json')) for k in range(2)]
  assert all(r['max_new_tokens'] == 6 for r in runs)  # The overrides reached each run...
  assert all('ours_over_hf_assisted' not in row for r in runs for row in r['rows'])  # ...hf_compare=False too.
  (row,) = summary['rows']
  effs = [r['rows'][0]['efficiency_measured_verify'] for r in runs]
  assert row['efficiency_measured_verify'] == [min(effs), float(np.median(effs)), max(effs)]
  assert json.load(open(tmp_path / 'bench_decode_spread.json'))['rows'] == summary['rows']

  def no_process(*a, **k):
    raise AssertionError('a finished run was run again')
  monkeypatch.setattr(subprocess, 'run', no_process)
  assert decode_spread.run(args, str(tmp_path), runs=2)['rows'] == summary['rows']  # Both runs reused.
  with pytest.raises(ValueError, match='holds runs made with'):  # ...but never under other flags.
    decode_spread.run(args[:-1] + ['--config.bench.repeats=2'], str(tmp_path), runs=2)


def test_a_failed_run_stops_the_spread_and_names_its_command(tmp_path, monkeypatch):
  monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  with pytest.raises(RuntimeError, match='Run 0 failed'):
    decode_spread.run(['--config=configs/bench_decode.py:smoke', '--config.bench.gammas=notatuple'], str(tmp_path), 1)
  with pytest.raises(ValueError, match='at least one run'):
    decode_spread.run(['--config=configs/bench_decode.py:smoke'], str(tmp_path), 0)
