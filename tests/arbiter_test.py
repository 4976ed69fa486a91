"""The arbiter's REINFORCE loop: it runs, logs what it should, changes the policy, and resumes exactly."""

import copy
import json
import os
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from cospec_jax.decoding.cospec import SCALAR_FEATURES
from cospec_jax.models import CheckpointError, save_hf_checkpoint
from cospec_jax.tasks.tokenizer import CharTokenizer
from cospec_jax import evaluate, generate
from cospec_jax.train import arbiter, counterfactual
from tests import helpers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs'))
import reproduce_table  # noqa: E402
import train_arbiter  # noqa: E402


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  """A tiny random pair that disagrees often (exported where the arbiter reads it) and an uninterrupted 4-step
  arbiter run with checkpoints at 2 and 4."""
  root = tmp_path_factory.mktemp('arbiter')
  tc, tp, dc, dp = helpers.tiny_pair(CharTokenizer().vocab_size, noise=0.15)
  for name, c, p in (('target', tc, tp), ('draft', dc, dp)):
    save_hf_checkpoint(str(root / name / 'hf'), c, p)
  config = train_arbiter.get_config('smoke')
  config.data.data_dir = str(root / 'tfds')
  config.pair.target_workdir = str(root / 'target')
  config.pair.draft_workdir = str(root / 'draft')
  arbiter.train_arbiter(config, str(root / 'full'))
  return config, root


def _metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_metrics_per_step(setup):
  config, root = setup
  metrics = _metrics(root / 'full')
  assert [m['step'] for m in metrics] == [1, 2, 3, 4]
  for key in ('reward', 'accuracy', 'draft_kept_at_mismatch', 'tokens_per_target_call', 'policy_entropy',
              'grad_norm'):
    assert all(np.isfinite(m[key]) for m in metrics), key
  assert all(1.0 <= m['tokens_per_target_call'] <= config.rl.gamma + 1 for m in metrics)
  assert all(m['decisions'] > 0 for m in metrics)  # The pair disagrees, so the arbiter decided.
  state = arbiter.restore_state(config, str(root / 'full'))
  assert int(state.step) == 4
  target, draft = arbiter.load_pair(config)
  initial = arbiter.initial_state(config, target, draft)
  assert not np.allclose(state.params['Dense_0']['kernel'], initial.params['Dense_0']['kernel'])


def test_resume_equals_uninterrupted(setup, tmp_path):
  config, root = setup
  killed = tmp_path / 'killed'
  shutil.copytree(root / 'full' / 'checkpoints', killed / 'checkpoints')
  shutil.rmtree(killed / 'checkpoints' / '4')
  with open(killed / 'metrics.jsonl', 'w') as f:  # Killed after logging step 3, past its last checkpoint (2).
    f.writelines(json.dumps(m) + '\n' for m in _metrics(root / 'full')[:3])
  arbiter.train_arbiter(config, str(killed))
  jax.tree_util.tree_map(np.testing.assert_array_equal, arbiter.restore_state(config, str(killed)),
                         arbiter.restore_state(config, str(root / 'full')))
  assert [m['step'] for m in _metrics(killed)] == [1, 2, 3, 4]
  np.testing.assert_allclose([m['reward'] for m in _metrics(killed)], [m['reward'] for m in _metrics(root / 'full')])


def test_a_corrupt_last_step_names_the_pipeline_flag_and_recovers(setup, tmp_path):
  """A damaged final checkpoint: the stage is not done (no done.json), the error names the pipeline's flag, and
  with that flag the run moves the damaged step aside and ends with the uninterrupted run's state."""
  config, root = setup
  damaged = tmp_path / 'damaged'
  shutil.copytree(root / 'full', damaged)
  (damaged / arbiter.DONE_FILE).unlink()
  for path in (damaged / 'checkpoints' / '4').rglob('*'):
    if path.is_file() and path.stat().st_size > 0:
      path.write_bytes(b'\0' * path.stat().st_size)
  with pytest.raises(FileNotFoundError, match='has not finished'):
    arbiter.finished_steps(config, str(damaged))
  with pytest.raises(Exception, match=r'--config\.arbiter\.rl\.restore_step'):
    arbiter.train_arbiter(config, str(damaged), '--config.arbiter')
  config = copy.deepcopy(config)
  config.rl.restore_step = 2
  arbiter.train_arbiter(config, str(damaged), '--config.arbiter')
  assert arbiter.finished_steps(config, str(damaged)) == [0, 2, 4]
  jax.tree_util.tree_map(np.testing.assert_array_equal, arbiter.restore_state(config, str(damaged)),
                         arbiter.restore_state(config, str(root / 'full')))


def test_warm_start_fits_the_policy_to_counterfactual_forks(setup):
  config, root = setup
  forks = counterfactual.Forks.load(str(root / 'full' / arbiter.FORKS_FILE))
  assert len(forks.problem_N) > 0 and len(forks.target_right_P) == config.warm_start.problems
  params = arbiter.restore_state(config, str(root / 'full'), step=0).params
  # The input statistics come from the forks, replicated once per lam of the grid (lam is set per copy).
  lam = list(SCALAR_FEATURES).index('lam')
  expected = forks.scalars_NxF.mean(0)
  expected[lam] = np.mean(config.rl.lams)
  np.testing.assert_allclose(params['scalars_mean'], expected, rtol=1e-4, atol=1e-4)
  if config.policy.projection:
    assert not np.allclose(params['target_hidden_inv_std'], 1.0)
  else:  # Scalar features only (the shipped policy): no hidden-state input at all.
    assert not any('hidden' in name for name in params)


def test_reproduce_table_smoke(setup, tmp_path):
  """Every method has a row at a setting chosen on validation; lossless SPD equals the target on every problem; the
  splits are disjoint; the files say the same."""
  config, root = setup
  table_config = reproduce_table.get_config('smoke')
  table_config.data = config.data
  table_config.pair = config.pair
  table_config.arbiter_workdir = str(root / 'full')
  results = evaluate.run(table_config, str(tmp_path))
  rows = {r['family']: r for r in results['rows']}
  relaxed = sorted(table_config.table.relaxed)  # A ConfigDict lists its keys in order.
  assert list(rows) == ['target-only', 'draft-only', 'spd greedy', 'spd sampling', *relaxed, 'judge',
                        'judge fix-aware', 'cospec supervised', 'cospec', 'oracle (upper bound)']
  assert results['overlap'] == {f'{a}/{b}': {'text': 0, 'content': 0} for a, b in
                                (('train', 'validation'), ('train', 'test'), ('validation', 'test'))}
  # The main task's splits (the transfer family's share of train left out); the overlap check covered both.
  assert results['split_sizes'] == {'train': 256 - round(256 * 0.2), 'validation': 16, 'test': 32}
  # The checkpoint: a REINFORCE step (not the warm start), the best of those kept on validation.
  points = results['arbiter_steps_validation']
  assert [p['step'] for p in points] == [2, 4] and results['arbiter_step'] in (2, 4)
  best = max(p['accuracy'] for p in points)
  assert next(p for p in points if p['step'] == results['arbiter_step'])['accuracy'] == best
  # Each row's setting is the one rule's choice from its own validation sweep, and carries those figures.
  spd_tau = results['sweeps']['spd greedy'][0]['tokens_per_target_call']
  for family, row in rows.items():
    if family == 'oracle (upper bound)':
      assert row['validation'] is None
      continue
    sweep = results['sweeps'][family]
    chosen = next(p for p in sweep if p['method'] == row['method'])
    assert row['validation'] == {k: v for k, v in chosen.items() if k != 'correct'}
    assert np.mean(chosen['correct']) == chosen['accuracy'] and len(chosen['correct']) == results['validation_problems']
    eligible = [p for p in sweep if p['tokens_per_target_call'] >= spd_tau - 1e-9]
    if eligible:
      assert row['validation']['accuracy'] == max(p['accuracy'] for p in eligible)
  assert len(results['sweeps']['topk']) == 2 and len(results['sweeps']['cospec']) == 2
  assert rows['spd greedy']['correct'] == rows['target-only']['correct']
  assert (rows['spd greedy']['gained'], rows['spd greedy']['lost'], rows['spd greedy']['mcnemar_p']) == (0, 0, 1.0)
  assert rows['target-only']['tokens_per_target_call'] == 1.0 and rows['target-only']['speedup'] == 1.0
  assert rows['oracle (upper bound)']['lost'] == 0  # It only ever keeps the draft where that fixes the answer.
  paired = results['paired']['cospec vs cospec supervised']
  expected = evaluate.mcnemar(rows['cospec']['correct'], rows['cospec supervised']['correct'])
  assert (paired['gained'], paired['lost'], paired['mcnemar_p']) == expected
  forks = results['test_forks']
  assert forks['fix'] + forks['break'] + forks['neutral'] == forks['forks'] > 0
  assert forks['neutral_share'] == forks['neutral'] / forks['forks'] and forks['problems'] == 32
  # Transfer: the main task's chosen settings on the units family's test split; SPD is lossless there too.
  transfer = results['transfer']['units']
  assert transfer['problems'] == 16
  assert [r['family'] for r in transfer['rows']] == ['target-only', 'spd greedy', 'cospec']
  assert transfer['rows'][1]['correct'] == transfer['rows'][0]['correct']
  assert transfer['rows'][2]['method'] == rows['cospec']['method']
  # Each speculative row's verify-step rate against SPD's, at both batch sizes; CoSpec's curve over lam.
  spd = rows['spd greedy']
  assert spd['step_rate_vs_spd'] in (1.0, None) and spd['step_rate_vs_spd_batch1'] in (1.0, None)
  assert rows['cospec']['step_rate_vs_spd_gross'] > 0 and 'step_rate_vs_spd' not in rows['target-only']
  assert rows['spd greedy']['step_rate_vs_spd_gross'] == rows['spd greedy']['step_rate_vs_spd_gross_batch1'] == 1.0
  for r in (rows['spd greedy'], rows['cospec']):  # Net of each call's one-step cost (a budget-1 pass), and gross.
    for suffix in ('', '_batch1'):
      net, gross = r[f'seconds_per_step{suffix}'], r[f'seconds_per_step_gross{suffix}']
      assert r[f'seconds_one_step{suffix}'] > 0 and gross > 0
      # None: the one-step calls timed no faster than the decode (tiny models). Its arithmetic: tests/timing_test.py.
      assert net is None or net > 0
      assert len(r[f'seconds_per_step_rounds{suffix}']) == results['timing_rounds']
  for suffix in ('', '_batch1'):  # Round by round: each round's SPD time per step over the same round's CoSpec time.
    rounds = [(s, c) for s, c in zip(spd[f'seconds_per_step_rounds{suffix}'],
                                      rows['cospec'][f'seconds_per_step_rounds{suffix}']) if s and c]
    expected = [min(s / c for s, c in rounds), float(np.median([s / c for s, c in rounds])),
                max(s / c for s, c in rounds)] if rounds else None
    assert rows['cospec'][f'step_rate_vs_spd_rounds{suffix}'] == expected
  assert [p['lam'] for p in results['curves']['cospec']] == [0.0, 1.0]
  for per_lam in results['oracle_agreement'].values():
    assert set(per_lam) == {'0', '1'}
    assert all(a['forks'] == forks['forks'] and 0.0 <= a['all'] <= 1.0 for a in per_lam.values())
  for r in rows.values():
    lo, hi = r['accuracy_ci95']
    assert lo <= r['accuracy'] <= hi and r['tokens_per_s'] > 0 and len(r['correct']) == results['problems']
  # The Pareto check lists exactly the other validation points that beat a point of CoSpec's curve on both axes.
  check = results['pareto_check']
  others = [p for f, points in results['sweeps'].items() if f != 'cospec' for p in points]
  beaten_by = {p['method']: [c for c in results['sweeps']['cospec'] if p['accuracy'] > c['accuracy'] and
                             p['tokens_per_target_call'] > c['tokens_per_target_call']] for p in others}
  assert check['points'] == len(others)
  assert [b['method'] for b in check['beating']] == [m for m, beaten in beaten_by.items() if beaten]
  for b in check['beating']:
    point = next(p for p in others if p['method'] == b['method'])
    assert b['beats'] in [c['method'] for c in beaten_by[b['method']]]
    beaten = next(c for c in results['sweeps']['cospec'] if c['method'] == b['beats'])
    assert (b['gained'], b['lost'], b['mcnemar_p']) == evaluate.mcnemar(point['correct'], beaten['correct'])
  with open(tmp_path / 'results.json') as f:
    assert json.load(f)['rows'][2]['correct'] == rows['spd greedy']['correct']
  table = (tmp_path / 'table.md').read_text()
  assert f'Pareto check on validation: {len(check["beating"])} of the {len(others)} other' in table
  assert all(f'| {r["method"]} |' in table for r in rows.values())
  assert (tmp_path / 'pareto.png').read_bytes()[:4] == b'\x89PNG'


def test_the_checkpoint_choice_ignores_the_last_step():
  """choose_step takes the most accurate validation point, not the last; choose applies the one rule."""
  from cospec_jax import selection
  points = [{'step': 2, 'accuracy': 0.6, 'tokens_per_target_call': 5.0},
            {'step': 4, 'accuracy': 0.5, 'tokens_per_target_call': 6.0}]
  assert selection.choose_step(points) == 0
  sweep = [{'accuracy': 0.9, 'tokens_per_target_call': 4.0},  # More accurate, but slower than SPD (5.0).
           {'accuracy': 0.7, 'tokens_per_target_call': 5.5},
           {'accuracy': 0.7, 'tokens_per_target_call': 6.0}]
  assert selection.choose(sweep, 5.0) == 2
  assert selection.choose(sweep, 7.0) == 2  # None reaches SPD: the most tokens per call.


def test_pareto_check_tests_each_point_above_the_curve():
  """A point more accurate and faster than a point of CoSpec's curve is listed, tested against the curve point it
  beats with the smallest McNemar p; points below the curve, or faster but less accurate, are not."""
  def point(method, correct, tau):
    return {'method': method, 'accuracy': float(np.mean(correct)), 'tokens_per_target_call': tau,
            'correct': list(correct)}
  ones, zeros = [True] * 15, [False] * 15
  sweeps = {'cospec': [point('lam 0', ones[:5] + zeros[:10], 5.0),  # 5 of 15 right, slow.
                       point('lam 1', zeros[:5] + ones[:8] + zeros[:2], 7.0)],  # 8 of 15, fast.
            'judge': [point('above both', ones[:13] + zeros[:2], 8.0),  # Right on 1-13: beats both.
                      point('above the slow one', ones[:6] + zeros[:9], 6.0),
                      point('faster, less accurate', ones[:3] + zeros[:12], 9.0),
                      point('more accurate, slower', ones[:14] + zeros[:1], 4.0)]}
  check = evaluate.pareto_check(sweeps)
  assert check['points'] == 4
  assert [b['method'] for b in check['beating']] == ['above both', 'above the slow one']
  both, slow = check['beating']
  # Against lam 0 'above both' gains 8 and loses 0; against lam 1 it gains 5 and loses 0: lam 0's p is smaller.
  assert (both['beats'], both['gained'], both['lost']) == ('lam 0', 8, 0)
  assert both['mcnemar_p'] == evaluate.mcnemar(sweeps['judge'][0]['correct'], sweeps['cospec'][0]['correct'])[2]
  assert (slow['beats'], slow['gained'], slow['lost'], slow['mcnemar_p']) == ('lam 0', 1, 0, 1.0)
  assert evaluate.pareto_check({'cospec': sweeps['cospec'], 'judge': sweeps['judge'][2:]})['beating'] == []


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_two_processes_equal_one(setup, tmp_path):
  """The same smoke run as two processes (jax.distributed on localhost, CPU collectives, one device each, rollouts
  split over a 2-device data axis): same rollouts, same updates, one set of metrics and checkpoints."""
  config, root = setup
  workdir, port = tmp_path / 'two', _free_port()
  # One device per process; the tests' other XLA flags (conftest.py: the optimization level) kept.
  xla_flags = [f for f in os.environ['XLA_FLAGS'].split() if not f.startswith('--xla_force_host_platform_device_count')]
  env = dict(os.environ, XLA_FLAGS=' '.join(xla_flags + ['--xla_force_host_platform_device_count=1']),
             JAX_PLATFORMS='cpu')
  flags = [f'--config.data.data_dir={config.data.data_dir}',
           f'--config.pair.target_workdir={config.pair.target_workdir}',
           f'--config.pair.draft_workdir={config.pair.draft_workdir}', '--config.mesh.data=-1',
           '--config.distributed.enabled=True', f'--config.distributed.coordinator_address=localhost:{port}',
           '--config.distributed.num_processes=2', f'--workdir={workdir}']
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  procs = [subprocess.Popen([sys.executable, '-m', 'cospec_jax.main', '--config=configs/train_arbiter.py:smoke',
                             f'--config.distributed.process_id={i}'] + flags, cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  assert 'arbiter: step 4' in outputs[0] and 'arbiter: step 4' not in outputs[1]  # Process 0 reports.
  assert [m['step'] for m in _metrics(workdir)] == [1, 2, 3, 4]  # Logged once.
  np.testing.assert_allclose([m['reward'] for m in _metrics(workdir)], [m['reward'] for m in _metrics(root / 'full')])
  # Within float tolerance: the summed gradients meet in another order, and Adam rescales small differences.
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4),
                         arbiter.restore_state(config, str(workdir)).params,
                         arbiter.restore_state(config, str(root / 'full')).params)


def test_generate_command_prints_the_trace(setup, tmp_path):
  """`python -m cospec_jax.generate` on the smoke pair and arbiter: each prompt's completion colored by source, with
  its statistics, and the HTML page."""
  config, root = setup
  page = tmp_path / 'trace.html'
  out = subprocess.run(
      [sys.executable, '-m', 'cospec_jax.generate', f'--target={root / "target"}', f'--draft={root / "draft"}',
       f'--arbiter={root / "full"}', '--rule=cospec', '--lam=1', '--max_new_tokens=16', '--gamma=4',
       '--prompt=Start with 23. Add 5. Times 3.', '--prompt=Start with 4. Minus 1.', f'--html={page}'],
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'legend:' in out.stdout and out.stdout.count('[cospec] target calls') == 2
  assert '\033[' in out.stdout  # Tokens colored by source.
  assert page.read_text().startswith('<!DOCTYPE html>') and 'Start with 4. Minus 1.' in page.read_text()


def test_generate_spd_equals_the_target_alone(setup):
  _, root = setup
  prompts = ['Start with 23. Add 5. Times 3.', 'Start with 4. Minus 1.', 'Start with 9.']
  target = generate.run(str(root / 'target'), '', 'target', prompts, max_new_tokens=16)
  spd = generate.run(str(root / 'target'), str(root / 'draft'), 'exact', prompts, max_new_tokens=16, gamma=4)
  assert [r['completion'] for r in spd] == [r['completion'] for r in target]
  assert all(r['kept_at_mismatch'] == 0 for r in spd)
  topk = generate.run(str(root / 'target'), str(root / 'draft'), 'topk', prompts, settings=['k=3'],
                      max_new_tokens=16, gamma=4)
  assert sum(r['mismatches'] for r in topk) > 0


def test_generate_names_bad_input(setup, tmp_path):
  config, root = setup
  other = tmp_path / 'other'
  tc, tp, dc, dp = helpers.tiny_pair(CharTokenizer().vocab_size, seed=5, noise=0.15)
  save_hf_checkpoint(str(other / 'target' / 'hf'), tc, tp)
  with pytest.raises(ValueError, match='trained for another pair: the target checkpoint'):
    generate.run(str(other / 'target'), str(root / 'draft'), 'cospec', ['Start with 4.'], arbiter=str(root / 'full'))
  with pytest.raises(CheckpointError, match='--draft='):
    generate.run(str(root / 'target'), str(tmp_path / 'nowhere'), 'exact', ['Start with 4.'])
  with pytest.raises(ValueError, match='Prompt 2 is'):
    generate.run(str(root / 'target'), str(root / 'draft'), 'exact', ['Start with 4.', '9' * 3000])
  with pytest.raises(ValueError, match='needs --arbiter'):
    generate.run(str(root / 'target'), str(root / 'draft'), 'cospec', ['Start with 4.'])
  with pytest.raises(ValueError, match='No prompt given'):
    generate.read_prompts([], '')
  bad = tmp_path / 'p.jsonl'
  bad.write_text('{"prompt": "Start with 4."}\n{"answer": 3}\n')
  with pytest.raises(ValueError, match='line 2 has no "prompt"'):
    generate.read_prompts([], str(bad))
