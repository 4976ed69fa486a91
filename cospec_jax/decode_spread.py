"""The decode benchmark in several fresh processes, and the spread of its efficiencies across them.

On a shared 2-core CPU the benchmark's efficiencies move by about 10 points between processes of the same code (the
README's "Where the bars stand"), more than between the rounds of one process, so one run says little about where a
loop's efficiency is centred. This runs `python -m cospec_jax.main` with the same config (and the same `--config.*`
overrides) `runs` times, one after another, each in a process of its own writing `run_<k>/bench_decode.json`, and
summarises every figure by its min, median and max over the runs and by how many runs reach issue 18's bar.

A run whose json exists is reused, not rerun (so a spread interrupted at run 3 of 5 resumes at run 3), and only by
the same config flags (`config_args.json` in the workdir); a failed run stops the spread with its output's tail and
leaves the finished runs as they are.

  python experiments/bench_decode_spread.py --config=configs/bench_decode.py --runs=5 --workdir=runs/decode_spread
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Sequence

import numpy as np

from cospec_jax import decode_benchmark, files

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # So each run imports this checkout's package.

# Issue 18's bars: eff(v) at batch 1 and at larger batches (static and refilled), ours over HF assisted at batch 1.
BAR_BATCH_1, BAR_BATCHED, BAR_OVER_HF = 0.95, 0.85, 1.5
FIGURES = (('efficiency_measured_verify', 'eff(v)'), ('efficiency_stream_measured_verify', 'refilled eff(v)'),
           ('ours_over_hf_assisted', 'ours/HF'), ('ours_over_hf_cap', 'ours/HF cap'))


def bar(figure: str, batch: int) -> float:
  """The issue's bar for `figure` at `batch` (for `ours_over_hf_cap`, the HF bar: runs whose calls allow it)."""
  if figure.startswith('ours_over_hf'):
    return BAR_OVER_HF
  return BAR_BATCH_1 if batch == 1 else BAR_BATCHED


def summarize(results: Sequence[dict]) -> list[dict]:
  """One row per (batch, gamma) of the runs' bench_decode.json results: each figure a run reported as [min, median,
  max] over the runs, with the runs at or above its bar. The runs must share their grid."""
  grids = [[(r['batch'], r['gamma']) for r in result['rows']] for result in results]
  if any(g != grids[0] for g in grids):
    raise ValueError(f'The runs decode different grids ({grids}); a spread compares runs of one config. Start it in '
                     'an empty --workdir, or give the config its runs were made with.')
  rows = []
  for i, (batch, gamma) in enumerate(grids[0]):
    row = dict(batch=batch, gamma=gamma, runs=len(results))
    for key, _ in FIGURES:
      x_R = np.array([result['rows'][i][key] for result in results if key in result['rows'][i]])
      if len(x_R):
        row[key] = decode_benchmark.spread(x_R)
        row[f'{key}_at_bar'] = int(np.sum(x_R >= bar(key, batch)))
    rows.append(row)
  return rows


def runs_meeting(results: Sequence[dict], figure: str, batch: int) -> int:
  """How many runs reach the bar for `figure` at every gamma of `batch` at once (the bar's own reading)."""
  return sum(all(r[figure] >= bar(figure, batch) for r in result['rows'] if r['batch'] == batch and figure in r)
             for result in results)


def run_processes(config_args: Sequence[str], workdir: str, runs: int) -> list[dict]:
  """The benchmark `runs` times, each in a fresh process with `config_args` (--config=... and its overrides); returns
  every run's result, reusing the runs already written."""
  if runs < 1:
    raise ValueError(f'--runs={runs}: a spread needs at least one run (5 gives a median worth reading).')
  os.makedirs(workdir, exist_ok=True)
  args_path = os.path.join(workdir, 'config_args.json')  # The runs in a workdir are of one command, or none are reused.
  if os.path.exists(args_path):
    with open(args_path) as f:
      earlier = json.load(f)
    if earlier != list(config_args):
      raise ValueError(f'{workdir} holds runs made with {earlier}, not {list(config_args)}; give the spread a new '
                       '--workdir (or the same config flags, to resume it).')
  else:
    files.write_atomically(args_path, json.dumps(list(config_args)))
  results = []
  for k in range(runs):
    run_dir = os.path.join(workdir, f'run_{k}')
    path = os.path.join(run_dir, 'bench_decode.json')
    if not os.path.exists(path):
      print(f'run {k + 1} of {runs}: {run_dir}', flush=True)
      command = [sys.executable, '-m', 'cospec_jax.main', *config_args, f'--workdir={run_dir}']
      env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_REPO, os.environ.get('PYTHONPATH')])))
      done = subprocess.run(command, capture_output=True, text=True, env=env)
      if done.returncode != 0:
        raise RuntimeError(f'Run {k} failed (exit {done.returncode}): {" ".join(command)}\n{done.stderr[-3000:]}\n'
                           f'The {k} runs before it are kept in {workdir}; rerun the same command to resume.')
    else:
      print(f'run {k + 1} of {runs}: reusing {path}', flush=True)
    with open(path) as f:
      results.append(json.load(f))
  return results


def run(config_args: Sequence[str], workdir: str, runs: int) -> dict:
  """Runs the spread, prints its table and writes `bench_decode_spread.json` in workdir; returns it."""
  results = run_processes(config_args, workdir, runs)
  rows = summarize(results)
  print(format_table(rows))
  batches = sorted({row['batch'] for row in rows})
  meeting = {f'{name} at batch {b}': runs_meeting(results, figure, b)
             for b in batches for figure, name in FIGURES if any(figure in row for row in rows if row['batch'] == b)}
  for name, n in meeting.items():
    print(f'runs at the bar at every gamma, {name}: {n} of {len(results)}')
  summary = dict(runs=len(results), config_args=list(config_args), rows=rows, runs_at_bar_every_gamma=meeting)
  files.write_atomically(os.path.join(workdir, 'bench_decode_spread.json'), json.dumps(summary, indent=2))
  return summary


def format_table(rows: Sequence[dict]) -> str:
  """Each figure as `median (min-max) [runs at the bar]`."""
  lines = [' B | gamma | ' + ' | '.join(f'{name:>27s}' for _, name in FIGURES)]
  for row in rows:
    cells = []
    for key, _ in FIGURES:
      if key not in row:
        cells.append(' ' * 27)
        continue
      lo, mid, hi = row[key]
      fmt = '{:.2f}' if key.startswith('ours_over_hf') else '{:.1%}'
      text = f'{fmt.format(mid)} ({fmt.format(lo)}-{fmt.format(hi)}) [{row[f"{key}_at_bar"]}/{row["runs"]}]'
      cells.append(f'{text:>27s}')
    lines.append(f'{row["batch"]:>2d} | {row["gamma"]:>5d} | ' + ' | '.join(cells))
  return '\n'.join(lines)
