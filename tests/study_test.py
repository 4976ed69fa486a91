"""The seed study (configs/study.py:smoke): every ablation has a run per seed, the summary follows from the runs, a
killed or extended study reuses its finished runs untouched, and one with other settings is refused."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from cospec_jax import evaluate, study, study_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(workdir, *flags):
  return subprocess.run([sys.executable, '-m', 'cospec_jax.main', f'--config={ROOT}/configs/study.py:smoke',
                         f'--workdir={workdir}', *flags], cwd=ROOT, capture_output=True, text=True, timeout=900)


def _bits_mean(bits):
  return np.mean([c == '1' for c in bits])


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
  """A study with one arbiter seed (as if killed after it), then the full smoke study in the same workdir."""
  workdir = str(tmp_path_factory.mktemp('study'))
  first = _run(workdir, '--config.study.arbiter_seeds=0')
  assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
  eval_files = [os.path.join(dp, f) for dp, _, fs in os.walk(workdir) for f in fs
                if f in (study.EVAL_FILE, study.CURVE_FILE, 'baselines.json')]
  stamps = {p: (os.stat(p).st_mtime_ns, open(p).read()) for p in eval_files}
  second = _run(workdir)
  assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
  with open(os.path.join(workdir, 'study.json')) as f:
    return {'workdir': workdir, 'first': first.stdout, 'second': second.stdout, 'stamps': stamps,
            'study': json.load(f)}


def test_every_ablation_has_a_run_per_seed(smoke):
  s = smoke['study']
  assert set(s['ablations']) == set(study.ABLATIONS)
  for name, a in s['ablations'].items():
    runs = [r for r in s['runs'] if r['ablation'] == name]
    assert sorted((r['pair_seed'], r['arbiter_seed']) for r in runs) == [(0, 0), (0, 1)], name
    assert a['runs'] == 2
    for r in runs:
      if name == 'supervised':
        assert r['step'] == 0  # The warm start alone.
      else:
        assert r['step'] > 0  # A REINFORCE checkpoint, chosen on validation.
  for name in ('study.md', 'study.png'):
    assert os.path.getsize(os.path.join(smoke['workdir'], name)) > 0


def test_the_draft_trains_beside_the_target(smoke):
  """On a CPU the pair's draft trains in a second process (cospec_jax/train/beside.py; tests/main_test.py holds
  that its parameters are the ones it would train alone), its output in its own log."""
  assert 'pair 0: draft training in a second process' in smoke['first']
  assert 'pair 0: target trained in' in smoke['first'] and 'pair 0: draft trained in' in smoke['first']
  assert os.path.getsize(os.path.join(smoke['workdir'], 'pair0', 'draft', 'train.log')) > 0


def test_summary_follows_from_the_runs(smoke):
  s = smoke['study']
  ref = s['references']['0']['target-only']
  for name, a in s['ablations'].items():
    runs = [r for r in s['runs'] if r['ablation'] == name]
    for r in runs:
      assert r['test']['0']['accuracy'] == pytest.approx(_bits_mean(r['correct']['test']))
      assert r['validation']['accuracy'] == pytest.approx(_bits_mean(r['correct']['validation']))
    acc = [r['test']['0']['accuracy'] for r in runs]
    assert a['test_accuracy']['mean'] == pytest.approx(np.mean(acc))
    assert a['gain_over_target_only']['test']['mean'] == pytest.approx(np.mean(acc) - ref['test']['accuracy'])
    pooled = a['pooled_vs_target_only']['test']
    assert pooled['gained'] == sum(r['test_vs_target_only']['gained'] for r in runs)
    assert pooled['lost'] == sum(r['test_vs_target_only']['lost'] for r in runs)
    if name != 'supervised':
      sup = {r['arbiter_seed']: r for r in s['runs'] if r['ablation'] == 'supervised'}
      assert a['minus_supervised']['validation']['mean'] == pytest.approx(np.mean(
          [r['validation']['accuracy'] - sup[r['arbiter_seed']]['validation']['accuracy'] for r in runs]))
    fast = f'{s["lams"][-1]:g}'  # The largest lam: its gain over target-only and its speed over plain SPD's.
    assert fast != '0'
    assert a[f'gain_over_target_only_lam{fast}']['mean'] == pytest.approx(
        np.mean([r['test'][fast]['accuracy'] for r in runs]) - ref['test']['accuracy'])
    spd = s['references']['0']['spd greedy']['test']['tokens_per_target_call']
    assert a[f'tokens_over_spd_lam{fast}']['mean'] == pytest.approx(
        np.mean([r['test'][fast]['tokens_per_target_call'] for r in runs]) / spd)


def test_a_finished_study_is_summarized_again_from_its_own_json(smoke, tmp_path):
  """`python -m cospec_jax.study_report DIR` recomputes the ablations from study.json's runs and references alone:
  the same figures the study wrote, the rest of study.json kept, study.md redrawn."""
  s = smoke['study']
  old = json.loads(json.dumps(s))
  for a in old['ablations'].values():  # As written before a figure was added to the summary.
    del a[f'tokens_over_spd_lam{s["lams"][-1]:g}']
  (tmp_path / 'study.json').write_text(json.dumps(old))
  out = subprocess.run([sys.executable, '-m', 'cospec_jax.study_report', str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert json.loads((tmp_path / 'study.json').read_text()) == s
  with open(os.path.join(smoke['workdir'], 'study.md')) as f:
    assert (tmp_path / 'study.md').read_text() == f.read()
  missing = subprocess.run([sys.executable, '-m', 'cospec_jax.study_report', str(tmp_path / 'nowhere')], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
  assert missing.returncode != 0 and 'No study.json in' in missing.stderr


def test_pareto_check_follows_from_the_sweeps(smoke):
  """Per arbiter seed: the pair's baseline sweeps (no CoSpec among them) and the shipped arm's curve over the table's
  lams at its chosen step, all on validation; the points listed above the curve are exactly those more accurate and
  faster than one of its points, each with the McNemar test against the curve point it beats."""
  s, workdir = smoke['study'], smoke['workdir']
  with open(os.path.join(workdir, 'pair0', 'baselines.json')) as f:
    baselines = json.load(f)
  assert {'spd greedy', 'judge', 'judge fix-aware', 'threshold'} <= set(baselines)
  assert not any(family.startswith('cospec') for family in baselines)
  points = [p for family in baselines.values() for p in family]
  for p in points:
    assert len(p['correct']) == s['validation_problems'] and p['accuracy'] == pytest.approx(_bits_mean(p['correct']))
  checks = {c['arbiter_seed']: c for c in s['pareto_checks']}
  assert sorted(checks) == [0, 1] and all(c['points'] == len(points) for c in checks.values())
  for seed, c in checks.items():
    with open(os.path.join(workdir, 'pair0', 'supervised_reinforce', f'seed{seed}', study.CURVE_FILE)) as f:
      curve = json.load(f)
    arm = next(r for r in s['runs'] if r['ablation'] == 'supervised+reinforce' and r['arbiter_seed'] == seed)
    assert curve['step'] == c['step'] == arm['step'] and [p['lam'] for p in curve['points']] == [0.0, 1.0]
    above = [p for p in points if any(p['accuracy'] > q['accuracy'] and
                                      p['tokens_per_target_call'] > q['tokens_per_target_call']
                                      for q in curve['points'])]
    assert [b['method'] for b in c['beating']] == [p['method'] for p in above]
    for b, p in zip(c['beating'], above):
      beaten = next(q for q in curve['points'] if q['method'] == b['beats'])
      assert (b['gained'], b['lost'], b['mcnemar_p']) == evaluate.mcnemar(
          [x == '1' for x in p['correct']], [x == '1' for x in beaten['correct']])
  with open(os.path.join(workdir, 'study.md')) as f:
    assert '## Pareto check on validation' in f.read()


def test_resumed_study_reuses_finished_runs_untouched(smoke):
  assert 'already done, skipped' not in smoke['first']
  skipped = [line for line in smoke['second'].splitlines() if 'arbiter seed 0' in line and 'run ' in line]
  assert len(skipped) == 3 and all('already done, skipped' in line for line in skipped), skipped
  assert sum('arbiter seed 1' in line and 'done in' in line for line in smoke['second'].splitlines()) == 3
  for path, (mtime, text) in smoke['stamps'].items():
    assert os.stat(path).st_mtime_ns == mtime and open(path).read() == text, path


def test_other_settings_are_refused_before_training(smoke):
  workdir = smoke['workdir']
  run_dir = os.path.join(workdir, 'pair0', 'supervised_reinforce', 'seed0')
  before = sorted(os.listdir(os.path.join(run_dir, 'checkpoints')))
  out = _run(workdir, '--config.arbiter.rl.steps=6')
  assert out.returncode != 0
  assert 'eval.json was made with other settings' in out.stderr and 'new --workdir' in out.stderr
  assert sorted(os.listdir(os.path.join(run_dir, 'checkpoints'))) == before  # Nothing trained further.


def test_mean_interval_is_the_t_interval():
  x = [0.71, 0.74, 0.69, 0.73]
  out = study_report.mean_interval(x)
  lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
  assert out['mean'] == pytest.approx(np.mean(x))
  assert out['ci95'] == pytest.approx([lo, hi])
  assert np.isnan(study_report.mean_interval([0.5])['ci95'][0])


def test_pooled_test_adds_up_the_runs():
  out = study_report._pooled([(3, 1), (4, 0), (2, 2)])
  assert (out['gained'], out['lost']) == (9, 3)
  assert out['mcnemar_p'] == pytest.approx(stats.binomtest(9, 12).pvalue)
