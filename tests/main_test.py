"""Every config builds; the main entry point runs the smoke benchmark end to end and writes sane results."""

import glob
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import safetensors.numpy

from cospec_jax import main as main_lib
from cospec_jax import pipeline, table_batching
from cospec_jax.train import arbiter, trainer
from cospec_jax.models import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', '*.py')))


def _load(path):
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
@pytest.mark.parametrize('arg', ['', 'smoke'])
def test_config_builds(path, arg):
  module = _load(path)
  assert 'Runtime' in module.__doc__ and 'python ' in module.__doc__  # Says how to run it and how long it takes.
  config = module.get_config(arg)
  if 'job' in config:  # Run by cospec_jax.main.
    assert config.job in main_lib.JOBS
  else:  # Run by a script of its own, which its docstring names.
    assert 'python experiments/' in module.__doc__
  for model in ('target', 'draft'):
    if model in config.get('bench', {}):
      config_lib.from_dict(config.bench[model].to_dict())  # A valid ModelConfig.


def test_main_runs_smoke_benchmark(tmp_path):
  workdir = tmp_path / 'bench'
  proc = subprocess.run(
      [sys.executable, '-m', 'cospec_jax.main', f'--config={ROOT}/configs/bench_decode.py:smoke',
       '--config.bench.max_new_tokens=12', f'--workdir={workdir}'],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'SPD tok/s' in proc.stdout
  result = json.loads((workdir / 'bench_decode.json').read_text())
  assert result['max_new_tokens'] == 12  # The command-line override reached the run.
  (row,) = result['rows']
  assert row['batch'] == 1 and row['gamma'] == 2
  assert 1.0 <= row['tau'] <= 3.0  # At most gamma + 1 tokens per target call.
  for key in ('c', 'v', 'target_tokens_per_s', 'spd_tokens_per_s', 'speedup', 'hf_assisted_tokens_per_s', 'hf_v'):
    assert row[key] > 0, key
  assert row['efficiency'] == pytest.approx(row['speedup'] / row['ideal_speedup'])
  # The cap on ours/HF: a step costing only its calls, whose one-token call is call_ms's, over HF's rate.
  calls_s = (row['v'] + row['gamma'] * row['c']) * row['call_ms']['one_token'] / 1e3
  assert row['ours_over_hf_cap'] == pytest.approx(row['tau'] / calls_s / row['hf_assisted_tokens_per_s'])


def test_unknown_config_key_is_named(tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'cospec_jax.main', f'--config={ROOT}/configs/bench_decode.py:smoke',
       '--config.bench.max_new_tokenz=12', f'--workdir={tmp_path}'],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert 'max_new_tokenz' in proc.stderr


def test_pipeline_smoke_runs_every_stage_and_resumes(tmp_path, monkeypatch, capsys):
  """The one-command pipeline (smoke): every stage runs once, reading the pair once for all of them, and writes the
  table; a second run (the command line) skips them all; table_batching reads the finished run."""
  workdir = tmp_path / 'pipeline'
  command = [sys.executable, '-m', 'cospec_jax.main', f'--config={ROOT}/configs/pipeline.py:smoke',
             f'--workdir={workdir}']
  loads = []
  load_pair = arbiter.load_pair
  monkeypatch.setattr(arbiter, 'load_pair', lambda *a, **k: loads.append(1) or load_pair(*a, **k))
  config = _load(os.path.join(ROOT, 'configs', 'pipeline.py')).get_config('smoke')
  pipeline.run(config, str(workdir))
  out = capsys.readouterr().out
  assert len(loads) == 1  # Arbiter, table and trace share one read of the pair's checkpoints.
  # The draft trained in a second process, beside the target: the parameters it would have trained in this one.
  assert 'train draft: started' in out and 'in a second process' in out
  assert (workdir / 'draft' / 'train.log').exists()
  trainer.train(config.draft, str(tmp_path / 'draft_alone'), '--config.draft')
  beside = safetensors.numpy.load_file(workdir / 'draft' / 'hf' / 'model.safetensors')
  alone = safetensors.numpy.load_file(tmp_path / 'draft_alone' / 'hf' / 'model.safetensors')
  assert beside.keys() == alone.keys()
  for name in alone:
    np.testing.assert_array_equal(beside[name], alone[name], err_msg=name)
  for stage in ('train draft', 'train target', 'train arbiter', 'evaluate every method', 'trace who wrote each token'):
    assert f'[pipeline] {stage}: done' in out, stage
  results = json.loads((workdir / 'table' / 'results.json').read_text())
  rows = {r['method']: r for r in results['rows']}
  assert rows['spd greedy']['correct'] == rows['target-only']['correct']
  assert '| cospec lam=' in out  # The table is printed.
  assert (workdir / 'table' / 'pareto.png').stat().st_size > 0
  page = (workdir / 'trace' / 'trace.html').read_text()
  assert page.startswith('<!DOCTYPE html>') and 'kept at a mismatch by the arbiter' in page and '<script' not in page
  assert 'right and target-only wrong on' in out
  table_mtime = (workdir / 'table' / 'results.json').stat().st_mtime
  table_md = (workdir / 'table' / 'table.md').read_text()
  (workdir / 'table' / 'table.md').unlink()  # Lost outputs of a finished stage: redrawn from results.json.
  (workdir / 'table' / 'pareto.png').unlink()
  again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count('already done, skipped') == 5
  assert (workdir / 'table' / 'results.json').stat().st_mtime == table_mtime  # Nothing finished is rewritten.
  assert (workdir / 'table' / 'table.md').read_text() == table_md
  assert (workdir / 'table' / 'pareto.png').read_bytes()[:4] == b'\x89PNG'
  assert '| cospec lam=' in again.stdout
  # The finished run's workload, static against continuous batching: the same completions for every method (the
  # deterministic rules of the table), timed; the table's files untouched.
  # One refill mode (every freed row at once): continuous_test.py holds refills k at a time to static batching.
  timed = table_batching.run(_load(os.path.join(ROOT, 'configs', 'pipeline.py')).get_config('smoke'), str(workdir),
                             rounds=1, refills=(0,))
  assert [r['method'] for r in timed['rows']] == ['target-only', 'spd greedy', 'cospec lam=0', 'cospec lam=1']
  assert timed['modes'] == ['static', 'refills all']
  assert all(r['identical'] and r['generated'] > 0 and min(r['seconds'].values()) > 0 for r in timed['rows'])
  assert json.loads((workdir / 'table_batching.json').read_text()) == timed
  assert (workdir / 'table' / 'results.json').stat().st_mtime == table_mtime


def test_a_draft_that_fails_beside_the_target_is_reported_with_its_log(tmp_path, capsys):
  """The draft's process fails (here a vocabulary the tokenizer does not have): the pipeline stops with its exit
  code and the path of its output, which holds the error; the target, trained meanwhile, stays finished."""
  config = _load(os.path.join(ROOT, 'configs', 'pipeline.py')).get_config('smoke')
  config.draft.model.vocab_size += 1
  workdir = tmp_path / 'pipeline'
  with pytest.raises(RuntimeError, match='train.log') as error:
    pipeline.run(config, str(workdir))
  assert 'train_pair_concurrently=False' in str(error.value)
  assert 'config.model.vocab_size' in (workdir / 'draft' / 'train.log').read_text()
  assert pipeline.model_done(str(workdir / 'target')) and not pipeline.model_done(str(workdir / 'draft'))
  out = capsys.readouterr().out
  assert 'train draft: done' not in out
  assert f'failed (its output: {workdir / "draft" / "train.log"})' in out  # Said when it happened.
  # As the error advises: with the flag off the draft trains in this process, first, and its error is raised here.
  config.train_pair_concurrently = False
  with pytest.raises(ValueError, match='config.model.vocab_size'):
    pipeline.run(config, str(tmp_path / 'one_process'))
  assert not (tmp_path / 'one_process' / 'draft' / 'train.log').exists()
  assert not (tmp_path / 'one_process' / 'target').exists()


def _second_process(parent: int):
  """The pid of `parent`'s multiprocessing child (beside.Training's), or None."""
  for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
      with open(f'/proc/{pid}/stat') as f:
        ppid = int(f.read().rsplit(')', 1)[1].split()[1])
      with open(f'/proc/{pid}/cmdline', 'rb') as f:
        cmdline = f.read()
    except (OSError, ValueError, IndexError):
      continue
    if ppid == parent and b'spawn_main' in cmdline:
      return int(pid)
  return None


def _running(pid: int) -> bool:
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')  # A zombie is dead, only not yet reaped.
  except OSError:
    return False


def test_the_draft_beside_ends_when_the_pipeline_is_killed(tmp_path):
  """A pipeline killed outright (SIGKILL: no cleanup runs) takes the draft's process with it, so a rerun never
  finds an orphan still training in the same workdir."""
  proc = subprocess.Popen(
      [sys.executable, '-m', 'cospec_jax.main', f'--config={ROOT}/configs/pipeline.py:smoke',
       '--config.draft.train.steps=1000000', f'--workdir={tmp_path}'],  # The draft trains until it is stopped.
      cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    child, deadline = None, time.time() + 300
    while child is None and proc.poll() is None and time.time() < deadline:
      time.sleep(0.2)
      child = _second_process(proc.pid)
    assert child is not None, f'no second process (pipeline exit code {proc.poll()})'
    time.sleep(2)
    assert _running(child)
  finally:
    proc.kill()
    proc.wait()
  deadline = time.time() + 30
  while _running(child) and time.time() < deadline:
    time.sleep(0.2)
  assert not _running(child)


@pytest.mark.parametrize('where', ['a_file', 'a_file/below'])
def test_unusable_workdir_is_named_before_work_starts(tmp_path, where):
  (tmp_path / 'a_file').write_text('not a directory')
  workdir = tmp_path / where
  proc = subprocess.run(
      [sys.executable, '-m', 'cospec_jax.main', f'--config={ROOT}/configs/pipeline.py:smoke', f'--workdir={workdir}'],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert f'--workdir={str(workdir)!r}' in proc.stderr and 'pick' in proc.stderr
  assert (tmp_path / 'a_file').read_text() == 'not a directory'


def test_mesh_benchmark_smoke(tmp_path):
  """Every mesh shape decodes the same tokens, so tau agrees across them; the table lists each mesh."""
  from cospec_jax import mesh_benchmark
  config = _load(os.path.join(ROOT, 'configs', 'bench_mesh.py')).get_config('smoke')
  result = mesh_benchmark.run(config, str(tmp_path))
  assert [(r['data'], r['model']) for r in result['rows']] == [tuple(m) for m in config.bench.meshes]
  assert len({r['tau'] for r in result['rows']}) == 1 and result['rows'][0]['tau'] > 1.0
  assert all(r['spd_tokens_per_s'] > 0 and r['target_tokens_per_s'] > 0 for r in result['rows'])
  assert json.loads((tmp_path / 'bench_mesh.json').read_text()) == result
