"""The seed study's outputs (cospec_jax/study.py): study.json, study.md and study.png.

Per ablation, across every (pair seed, arbiter seed) run: the mean and a 95% t-interval of validation accuracy, test
accuracy and tokens per target call (at lam = 0 and at the largest lam), of the gain over target-only and of the
difference from the supervised warm start of the same run; per pair seed the mean. Pooled paired tests add up every
run's problems won and lost (exact McNemar on the sums; the runs share their problems, so the pooled p is a summary
of consistency, not of independent samples: the t-intervals over runs are the primary figures). Per (pair seed,
arbiter seed), the Pareto check on validation: the baseline points above the shipped arm's CoSpec curve, each with
its paired test.
"""

from __future__ import annotations

import io
import json
import os
import sys

import numpy as np
from scipy import stats

from cospec_jax import evaluate, files


def mean_interval(values) -> dict:
  """{'mean', 'ci95': [lo, hi], 'n'} with a t-interval over the values (nan with fewer than two)."""
  x = np.asarray(values, np.float64)
  n = len(x)
  mean = float(x.mean()) if n else float('nan')
  if n < 2:
    return {'mean': mean, 'ci95': [float('nan'), float('nan')], 'n': n}
  half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / np.sqrt(n))
  return {'mean': mean, 'ci95': [mean - half, mean + half], 'n': n}


def _bools(bits: str) -> np.ndarray:
  return np.frombuffer(bits.encode(), np.uint8) == ord('1')


def _pooled(pairs) -> dict:
  """Exact McNemar on the sums of (gained, lost) over runs."""
  gained, lost = (int(sum(p[i] for p in pairs)) for i in (0, 1))
  p = stats.binomtest(gained, gained + lost).pvalue if gained + lost else 1.0
  return {'gained': gained, 'lost': lost, 'mcnemar_p': float(p)}


def _with_bools(points: list[dict]) -> list[dict]:
  """Points whose 'correct' bit strings (as the study stores them) are boolean arrays (as pareto_check reads them)."""
  return [dict(p, correct=_bools(p['correct'])) for p in points]


def pareto_checks(per_pair: dict) -> list[dict]:
  """`evaluate.pareto_check` of each (pair seed, arbiter seed): the pair's baseline sweeps against that arbiter's
  CoSpec curve, all on validation (Study.baselines, Study.curve)."""
  out = []
  for pair_seed, pair in per_pair.items():
    if not pair.get('baselines'):
      continue
    sweeps = {family: _with_bools(points) for family, points in pair['baselines'].items()}
    for arbiter_seed, curve in pair['curves'].items():
      check = evaluate.pareto_check(dict(sweeps, cospec=_with_bools(curve['points'])))
      out.append({'pair_seed': pair_seed, 'arbiter_seed': arbiter_seed, 'step': curve['step'],
                  'curve': [{k: p[k] for k in ('lam', 'accuracy', 'tokens_per_target_call')} for p in curve['points']],
                  'points': check['points'], 'beating': check['beating']})
  return out


def lam_key(lam: float) -> str:
  """A lam as study.json keys it ('0', '2'); the last of the study's lams is its fast end."""
  return f'{lam:g}'


def summarize(config, per_pair: dict, tuning: dict, seconds: float) -> dict:
  """study.json's content from every pair's reference and runs (`Study.run`)."""
  s = config.study
  lam_keys = [lam_key(lam) for lam in s.lams]
  fast = lam_keys[-1]
  runs = []
  for pair_seed, pair in per_pair.items():
    ref = pair['reference']['target-only']
    for (arbiter_seed, _), result in pair['evals'].items():
      supervised = pair['evals'].get((arbiter_seed, 'supervised+reinforce'), {}).get('arms', {}).get('supervised')
      for name, arm in result['arms'].items():
        row = {'pair_seed': pair_seed, 'arbiter_seed': arbiter_seed, 'ablation': name, 'step': arm['step'],
               'validation': {k: arm['validation'][k] for k in ('accuracy', 'tokens_per_target_call')},
               'test': {lam: {k: arm['test'][lam][k] for k in ('accuracy', 'tokens_per_target_call')}
                        for lam in lam_keys},
               'correct': {'validation': arm['validation']['correct'], 'test': arm['test']['0']['correct']}}
        for split in ('validation', 'test'):
          vs = evaluate.mcnemar(_bools(row['correct'][split]), _bools(ref[split]['correct']))
          row[f'{split}_vs_target_only'] = dict(zip(('gained', 'lost', 'mcnemar_p'), vs))
          if supervised is not None:
            sup_bits = supervised['validation']['correct'] if split == 'validation' else supervised['test']['0']['correct']
            vs = evaluate.mcnemar(_bools(row['correct'][split]), _bools(sup_bits))
            row[f'{split}_vs_supervised'] = dict(zip(('gained', 'lost', 'mcnemar_p'), vs))
        runs.append(row)
  references = {str(seed): {name: {split: {k: v[k] for k in ('accuracy', 'tokens_per_target_call')}
                                   for split, v in methods.items()}
                            for name, methods in pair['reference'].items()}
                for seed, pair in per_pair.items()}
  ablations = summarize_ablations(runs, references, s.ablations, fast)
  return {'pair_seeds': list(s.pair_seeds), 'arbiter_seeds': list(s.arbiter_seeds), 'lams': list(s.lams),
          'validation_problems': config.arbiter.table.validation_examples,
          'test_problems': config.arbiter.table.num_examples,
          'rl_steps': config.arbiter.rl.steps, 'tuning': tuning, 'references': references,
          'forks': {str(seed): pair['forks'] for seed, pair in per_pair.items()},
          'ablations': ablations, 'runs': runs, 'pareto_checks': pareto_checks(per_pair), 'seconds': seconds}


def summarize_ablations(runs: list[dict], references: dict, names, fast: str) -> dict:
  """Each ablation's figures over its runs, from study.json's own `runs` and `references` (so a study.json can be
  summarized again, `main`): mean and t-interval of accuracy and tokens per call at lam 0 and at the largest lam
  (`fast`), the gain over the pair's target-only (lam 0: validation and test; the largest lam: test), the largest
  lam's tokens per call over the pair's plain SPD (test), pooled paired tests, per-pair-seed means, and the difference
  from the same seed's warm start."""
  target = {int(seed): ref['target-only'] for seed, ref in references.items()}
  spd = {int(seed): ref['spd greedy']['test']['tokens_per_target_call'] for seed, ref in references.items()}
  ablations = {}
  for name in names:
    rows = [r for r in runs if r['ablation'] == name]
    if not rows:
      continue
    out = {
        'runs': len(rows),
        'validation_accuracy': mean_interval([r['validation']['accuracy'] for r in rows]),
        'test_accuracy': mean_interval([r['test']['0']['accuracy'] for r in rows]),
        'tokens_per_target_call': mean_interval([r['test']['0']['tokens_per_target_call'] for r in rows]),
        f'test_accuracy_lam{fast}': mean_interval([r['test'][fast]['accuracy'] for r in rows]),
        f'tokens_per_target_call_lam{fast}': mean_interval([r['test'][fast]['tokens_per_target_call'] for r in rows]),
        f'gain_over_target_only_lam{fast}': mean_interval([r['test'][fast]['accuracy']
                                                           - target[r['pair_seed']]['test']['accuracy'] for r in rows]),
        f'tokens_over_spd_lam{fast}': mean_interval([r['test'][fast]['tokens_per_target_call'] / spd[r['pair_seed']]
                                                     for r in rows]),
        'gain_over_target_only': {
            split: mean_interval([(r[split]['accuracy'] if split == 'validation' else r['test']['0']['accuracy'])
                                  - target[r['pair_seed']][split]['accuracy'] for r in rows])
            for split in ('validation', 'test')},
        'pooled_vs_target_only': {split: _pooled([(r[f'{split}_vs_target_only']['gained'],
                                                   r[f'{split}_vs_target_only']['lost']) for r in rows])
                                  for split in ('validation', 'test')},
        'per_pair_seed': {str(seed): {
            'test_accuracy': float(np.mean([r['test']['0']['accuracy'] for r in rows if r['pair_seed'] == seed])),
            'gain_over_target_only': float(np.mean([r['test']['0']['accuracy'] - target[seed]['test']['accuracy']
                                                    for r in rows if r['pair_seed'] == seed])),
            'tokens_per_target_call': float(np.mean([r['test']['0']['tokens_per_target_call'] for r in rows
                                                     if r['pair_seed'] == seed]))}
                          for seed in target},
    }
    if all('validation_vs_supervised' in r for r in rows) and name != 'supervised':
      sup = {(r['pair_seed'], r['arbiter_seed']): r for r in runs if r['ablation'] == 'supervised'}
      out['minus_supervised'] = {
          split: mean_interval([(r['validation']['accuracy'] - sup[k]['validation']['accuracy']) if split == 'validation'
                                else (r['test']['0']['accuracy'] - sup[k]['test']['0']['accuracy'])
                                for r in rows for k in [(r['pair_seed'], r['arbiter_seed'])]])
          for split in ('validation', 'test')}
      out['pooled_vs_supervised'] = {split: _pooled([(r[f'{split}_vs_supervised']['gained'],
                                                      r[f'{split}_vs_supervised']['lost']) for r in rows])
                                     for split in ('validation', 'test')}
    ablations[name] = out
  return ablations


def _fmt(mi: dict, scale: float = 100.0, digits: int = 1, sign: bool = False) -> str:
  lo, hi = mi['ci95']
  f = f'{{:{"+" if sign else ""}.{digits}f}}'
  if np.isnan(lo):
    return f.format(mi['mean'] * scale)
  return f'{f.format(mi["mean"] * scale)} [{f.format(lo * scale)}, {f.format(hi * scale)}]'


def format_markdown(study: dict) -> str:
  fast = lam_key(study['lams'][-1])
  n_pairs, n_seeds = len(study['pair_seeds']), len(study['arbiter_seeds'])
  lines = [f'# Seed study: {n_pairs} pair seeds x {n_seeds} arbiter seeds, {study["rl_steps"]} REINFORCE steps',
           '',
           f'Mean and 95% t-interval over the {n_pairs * n_seeds} runs of each ablation; accuracy in points, on '
           f'{study["test_problems"]} test problems (read once) and {study["validation_problems"]} validation '
           f'problems (where every checkpoint was chosen) at lam 0 unless marked; tokens per target call at gamma 8.',
           '',
           f'| ablation | validation acc. | test acc. | gain over target-only (val.) | gain over target-only (test) | '
           f'minus supervised (val.) | minus supervised (test) | tokens/call | test acc. at lam {fast} | '
           f'tokens/call at lam {fast} | gain over target-only at lam {fast} (test) | tokens/call over SPD\'s at lam '
           f'{fast} (test) | pooled vs target-only (test) | pooled vs supervised (val. / test) |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
  for name, a in study['ablations'].items():
    minus = a.get('minus_supervised')
    pooled = a.get('pooled_vs_supervised')
    pt = a['pooled_vs_target_only']['test']
    lines.append(
        f'| {name} | {_fmt(a["validation_accuracy"])} | {_fmt(a["test_accuracy"])} | '
        f'{_fmt(a["gain_over_target_only"]["validation"], sign=True)} | '
        f'{_fmt(a["gain_over_target_only"]["test"], sign=True)} | '
        + (f'{_fmt(minus["validation"], sign=True)} | {_fmt(minus["test"], sign=True)} | ' if minus else '- | - | ')
        + f'{_fmt(a["tokens_per_target_call"], 1, 2)} | {_fmt(a[f"test_accuracy_lam{fast}"])} | '
        f'{_fmt(a[f"tokens_per_target_call_lam{fast}"], 1, 2)} | '
        f'{_fmt(a[f"gain_over_target_only_lam{fast}"], sign=True)} | {_fmt(a[f"tokens_over_spd_lam{fast}"], 1, 2)}x | '
        f'+{pt["gained"]}/-{pt["lost"]} p={pt["mcnemar_p"]:.2g} | '
        + (f'+{pooled["validation"]["gained"]}/-{pooled["validation"]["lost"]} p={pooled["validation"]["mcnemar_p"]:.2g}'
           f' / +{pooled["test"]["gained"]}/-{pooled["test"]["lost"]} p={pooled["test"]["mcnemar_p"]:.2g} |'
           if pooled else '- |'))
  lines += ['', '## Per pair seed (mean over arbiter seeds; test, lam 0)', '',
            '| pair seed | target-only val. / test | SPD tokens/call (test) | ' +
            ' | '.join(f'{name}: acc. (gain)' for name in study['ablations']) + ' |',
            '|---|---|---|' + '---|' * len(study['ablations'])]
  for seed in study['pair_seeds']:
    ref = study['references'][str(seed)]
    lines.append(
        f'| {seed} | {ref["target-only"]["validation"]["accuracy"]:.1%} / {ref["target-only"]["test"]["accuracy"]:.1%}'
        f' | {ref["spd greedy"]["test"]["tokens_per_target_call"]:.2f} | ' + ' | '.join(
            f'{a["per_pair_seed"][str(seed)]["test_accuracy"]:.1%} ({a["per_pair_seed"][str(seed)]["gain_over_target_only"]:+.1%})'
            for a in study['ablations'].values()) + ' |')
  checks = study.get('pareto_checks')
  if checks:
    above = sum(len(c['beating']) for c in checks)
    significant = sum(b['mcnemar_p'] < 0.05 for c in checks for b in c['beating'])
    lines += ['', '## Pareto check on validation', '',
              f'Each CoSpec curve (supervised+reinforce at its chosen checkpoint, over the table\'s lams) against its '
              f'pair\'s baselines, the table\'s grids swept on the same {study["validation_problems"]} validation '
              f'problems ({checks[0]["points"]} points per pair): a point above the curve is more accurate and keeps '
              'more tokens per call than one of its points, and is tested (exact McNemar, paired, uncorrected) '
              f'against the curve point it beats with the smallest p. Over {len(checks)} curves: {above} points above '
              f'a curve, {significant} of them with p < 0.05.', '',
              '| pair seed | arbiter seed | step | curve (lam: acc. / tokens per call) | points above | p < 0.05 | '
              'smallest p |', '|---|---|---|---|---|---|---|']
    for c in checks:
      best = min(c['beating'], key=lambda b: b['mcnemar_p'], default=None)
      lines.append(f'| {c["pair_seed"]} | {c["arbiter_seed"]} | {c["step"]} | ' + '; '.join(
          f'{p["lam"]:g}: {p["accuracy"]:.1%} / {p["tokens_per_target_call"]:.2f}' for p in c['curve']) +
          f' | {len(c["beating"])} | {sum(b["mcnemar_p"] < 0.05 for b in c["beating"])} | ' + (
              f'{best["mcnemar_p"]:.2g} ({best["method"]} over lam {best["beats"].split("=")[-1]}, '
              f'+{best["gained"]}/-{best["lost"]})' if best else '-') + ' |')
  tuning = study['tuning']
  lines += ['', f'REINFORCE settings, chosen on validation (pair seed {tuning.get("pair_seed", "-")}, arbiter seed '
            f'{tuning.get("arbiter_seed", "-")}, not a study seed): {tuning["chosen"]}.']
  if tuning['points']:
    lines += ['', '| setting | best step | validation acc. | tokens/call |', '|---|---|---|---|']
    lines += [f'| {p["setting"]} | {p["step"]} | {p["accuracy"]:.1%} | {p["tokens_per_target_call"]:.2f} |'
              for p in tuning['points']]
  lines += ['', f'Study wall-clock in the run that finished it: {study["seconds"] / 60:.1f} min (earlier sessions\' '
            'time not included when it was resumed).']
  return '\n'.join(lines) + '\n'


def plot(study: dict, path: str) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fast = lam_key(study['lams'][-1])
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for i, (name, a) in enumerate(study['ablations'].items()):
    color = f'C{i}'
    rows = [r for r in study['runs'] if r['ablation'] == name]
    for lam, marker in (('0', 'o'), (fast, 's')):
      x = [r['test'][lam]['tokens_per_target_call'] for r in rows]
      y = [100 * r['test'][lam]['accuracy'] for r in rows]
      ax.scatter(x, y, color=color, alpha=0.25, s=12, marker=marker)
      ax.errorbar(np.mean(x), np.mean(y), yerr=np.std(y, ddof=1) if len(y) > 1 else 0, color=color, marker=marker,
                  mfc=color if lam == '0' else 'white', capsize=3,
                  label=f'{name}' if lam == '0' else None)
  target = np.mean([100 * r['target-only']['test']['accuracy'] for r in study['references'].values()])
  spd = np.mean([r['spd greedy']['test']['tokens_per_target_call'] for r in study['references'].values()])
  ax.axhline(target, color='gray', ls='--', lw=1, label='target-only (mean)')
  ax.axvline(spd, color='gray', ls=':', lw=1, label='plain SPD tokens/call (mean)')
  ax.set_xlabel('tokens per target call (test)')
  ax.set_ylabel('test accuracy (%)')
  ax.set_title(f'Seed study: runs (dots), mean +/- s.d. (filled: lam 0, hollow: lam {fast})', fontsize=9)
  ax.legend(fontsize=7)
  buffer = io.BytesIO()
  fig.tight_layout()
  fig.savefig(buffer, format='png', dpi=110)
  plt.close(fig)
  files.write_atomically(path, buffer.getvalue())


def write(study: dict, workdir: str) -> None:
  """study.md and study.png, then study.json (last: the study's done marker)."""
  files.write_atomically(os.path.join(workdir, 'study.md'), format_markdown(study))
  plot(study, os.path.join(workdir, 'study.png'))
  files.write_atomically(os.path.join(workdir, 'study.json'), json.dumps(study, indent=1))
  print(format_markdown(study))


def main(argv) -> None:
  """`python -m cospec_jax.study_report STUDY_DIR`: summarizes a finished study's study.json again from its own runs and
  references (`summarize_ablations`, e.g. after a figure was added to the summary) and rewrites study.md, study.png and
  study.json; the runs, references, forks and checks are kept as they are."""
  if len(argv) != 2:
    raise SystemExit(f'usage: python -m cospec_jax.study_report STUDY_DIR (got {argv[1:]})')
  path = os.path.join(argv[1], 'study.json')
  if not os.path.exists(path):
    raise SystemExit(f'No study.json in {argv[1]!r}: pass the workdir of a finished study (configs/study.py).')
  with open(path) as f:
    study = json.load(f)
  names = list(study['ablations'])
  study['ablations'] = summarize_ablations(study['runs'], study['references'], names, lam_key(study['lams'][-1]))
  write(study, argv[1])


if __name__ == '__main__':
  main(sys.argv)
