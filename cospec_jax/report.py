"""The comparison's outputs from its results (cospec_jax/evaluate.py): the Markdown table and the Pareto plot."""

from __future__ import annotations

import io

import numpy as np

from cospec_jax import files


def _rate(rate) -> str:
  return '-' if rate is None else f'{rate:.2f}'


def format_table(results: dict) -> str:
  """The table as Markdown: each method at its chosen point, on test."""
  small = results.get('small_batch', 1)
  # Results of 02d50a8 on: calls interleaved, each call's fastest round, steps net of a one-step pass (budget 1).
  one_step = any('seconds_one_step' in r for r in results['rows'])
  timing = (f'timing at batch {results["batch_size"]} on {results["timing_batch_problems"]} problems and at batch '
            f'{small} on {results["timing_problems"]}, ' + (
                f'each call\'s fastest of {results["timing_rounds"]} rounds interleaved call by call' if one_step
                else f'the fastest of {results["timing_rounds"]} interleaved rounds')
            if 'timing_rounds' in results else f'batch-{small} timing on {results["timing_problems"]} problems')
  lines = [f'{results["problems"]} test problems, gamma {results["gamma"]}, accuracy batch {results["batch_size"]}, '
           f'{timing} ({results["device"]}). Settings chosen on '
           f'{results["validation_problems"]} validation problems by one rule: {results["choice_rule"]}.', '',
           '| method | validation acc. | validation tokens/call | accuracy | 95% CI | +/- vs target | McNemar p | '
           f'tokens/call | calls/token | speedup | speedup (batch {small}) | step rate vs SPD (batch '
           f'{results["batch_size"]} / {small}) |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|']
  for r in results['rows']:
    lo, hi = r['accuracy_ci95']
    v = r.get('validation') or {}
    val = (f'{v["accuracy"]:.1%} | {v["tokens_per_target_call"]:.2f}' if v else '- | -')
    lines.append(f'| {r["method"]} | {val} | {r["accuracy"]:.1%} | {lo:.1%}-{hi:.1%} | +{r["gained"]}/-{r["lost"]} | '
                 f'{r["mcnemar_p"]:.2g} | {r["tokens_per_target_call"]:.2f} | {r["target_calls_per_token"]:.3f} | '
                 f'{r["speedup"]:.2f}x | {r["speedup_batch1"]:.2f}x | ' + (
                     f'{_rate(r["step_rate_vs_spd"])} / {_rate(r["step_rate_vs_spd_batch1"])} |'
                     if 'step_rate_vs_spd' in r else '- |'))
  gross = [r for r in results['rows'] if 'step_rate_vs_spd_gross' in r]
  if gross:
    net_of = ('what each call costs besides its steps (both prefills, the host\'s work and the first step, timed by '
              'the same program with a budget of 1 token)' if one_step else
              'each call\'s fixed cost (both prefills and the host\'s work, timed by the same program with a budget of '
              '0 tokens)')
    lines += ['', f'Step rate vs SPD: seconds per verify step, net of {net_of}, SPD\'s over the row\'s. Gross, that '
              'cost charged to the steps (it favours rules with more steps per answer): ' + '; '.join(
                  f'{r["method"]} {_rate(r["step_rate_vs_spd_gross"])} / {_rate(r["step_rate_vs_spd_gross_batch1"])}'
                  for r in gross) + '.']
  spread = [r for r in results['rows'] if r.get('step_rate_vs_spd_rounds') and r['family'] != 'spd greedy']
  if spread:
    lines += ['', f'Step rate vs SPD round by round (SPD\'s net time per step over the row\'s within each of the '
              f'{results["timing_rounds"]} rounds; min-max (median), batch {results["batch_size"]} / {small}): '
              + '; '.join(
                  f'{r["method"]} ' + ' / '.join(
                      '-' if not q else f'{q[0]:.2f}-{q[2]:.2f} ({q[1]:.2f})'
                      for q in (r['step_rate_vs_spd_rounds'], r.get('step_rate_vs_spd_rounds_batch1')))
                  for r in spread) + '.']
  for name, p in results.get('paired', {}).items():
    lines += ['', f'Paired on test, {name}: +{p["gained"]}/-{p["lost"]}, exact McNemar p = {p["mcnemar_p"]:.2g}.']
  for name, points in results.get('curves', {}).items():
    lines += ['', f'{name} over lam on validation (accuracy minus target-only, tokens per call over SPD\'s): ' +
              '; '.join(f'lam {p["lam"]:g}: {p["accuracy_minus_target"]:+.1%}, {p["tokens_per_call_over_spd"]:.2f}x'
                        for p in points) + '.']
  check = results.get('pareto_check')
  if check:
    beating = check['beating']
    text = (f'Pareto check on validation: {len(beating)} of the {check["points"]} other validation points beat a '
            f'point of {check["family"]}\'s curve on both axes (more accurate, more tokens per call)')
    if beating:
      text += ('; each against the point it beats with the smallest exact McNemar p (paired over the validation '
               'problems, uncorrected for the points checked): ' + '; '.join(
                   f'{b["method"]} {b["accuracy"]:.1%}/{b["tokens_per_target_call"]:.2f} over {b["beats"]} '
                   f'{b["beaten_accuracy"]:.1%}/{b["beaten_tokens_per_target_call"]:.2f}: +{b["gained"]}/-{b["lost"]}, '
                   f'p = {b["mcnemar_p"]:.2g}' for b in beating))
    lines += ['', text + '.']
  for name in ('train_forks', 'test_forks'):
    if name in results:
      c = results[name]
      lines += ['', f'Counterfactual forks of {c.get("problems", "?")} {name.split("_")[0]} problems: {c["forks"]}; keeping '
                f'the draft fixes {c["fix"]}, breaks {c["break"]}, changes nothing at {c["neutral"]} '
                f'({c.get("neutral_share", c["neutral"] / max(c["forks"], 1)):.0%} neutral).']
  for family, transfer in results.get('transfer', {}).items():
    lines += ['', f'Transfer to {family} ({transfer["problems"]} test problems; settings and arbiter from the main task):',
              '', '| method | accuracy | 95% CI | +/- vs target | McNemar p | tokens/call |', '|---|---|---|---|---|---|']
    for r in transfer['rows']:
      lo, hi = r['accuracy_ci95']
      lines.append(f'| {r["method"]} | {r["accuracy"]:.1%} | {lo:.1%}-{hi:.1%} | +{r["gained"]}/-{r["lost"]} | '
                   f'{r["mcnemar_p"]:.2g} | {r["tokens_per_target_call"]:.2f} |')
  agreement = results.get('oracle_agreement', {})
  if agreement:
    lines += ['', 'Agreement with the counterfactual label on the test split\'s forks (all forks / forks where keeping '
              'the draft changes the answer):', '']
    for name, per_lam in agreement.items():
      lines.append(f'- {name}: ' + '; '.join(f'lam {lam}: {a["all"]:.1%} / {a["decisive"]:.1%}'
                                             for lam, a in per_lam.items()))
  return '\n'.join(lines) + '\n'


def plot_pareto(results: dict, path: str) -> None:
  """Each speculative method's validation sweep as a curve (its chosen point ringed): accuracy against tokens per
  target call, and against wall-clock speedup over target-only at the accuracy run's batch size (points only: the
  clock is noisy). One-model decoding (target-only, draft-only) is drawn as horizontal reference lines."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  sweeps = {f: pts for f, pts in results['sweeps'].items() if pts and 'accuracy' in pts[0]}
  if not sweeps:
    return
  one_model = {f: sweeps.pop(f)[0] for f in ('target-only', 'draft-only') if f in sweeps}
  base_speed = one_model['target-only']['tokens_per_s'] if 'target-only' in one_model else 1.0
  chosen = {r['family']: r['method'] for r in results['rows']}
  colors = {'cospec': 'crimson', 'cospec supervised': 'darkorange'}
  others = [f for f in sweeps if f not in colors]
  palette = [c for i, c in enumerate(plt.get_cmap('tab10').colors) if i not in (1, 3)]  # Not orange or red.
  colors.update({f: palette[i % len(palette)] for i, f in enumerate(others)})
  fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
  markers = 'os^vD<>pPXh*'
  for ax, key, label, joined in (
      (axes[0], 'tokens_per_target_call', 'tokens per target call', True),
      (axes[1], 'tokens_per_s', f'wall-clock speedup over target-only (batch {results["batch_size"]}, this CPU)',
       False)):
    for name, p in one_model.items():
      ax.axhline(p['accuracy'], ls='--' if name == 'target-only' else ':', color='gray', lw=1)
      ax.annotate(name, (0.01, p['accuracy']), xycoords=('axes fraction', 'data'), fontsize=8, color='gray',
                  va='bottom')
    for j, (family, points) in enumerate(sweeps.items()):
      x = np.asarray([p[key] / (base_speed if key == 'tokens_per_s' else 1.0) for p in points])
      y = np.asarray([p['accuracy'] for p in points])
      order = np.argsort(x) if joined else np.arange(len(x))
      ax.plot(x[order], y[order], marker=markers[j % len(markers)], ms=4, lw=1 if joined else 0,
              color=colors[family], label=family)
      for p, xi in zip(points, x):
        if p['method'] == chosen.get(family):
          ax.plot(xi, p['accuracy'], 'o', ms=11, mfc='none', mec=colors[family], mew=1.5)
    ax.set_xlabel(label)
    ax.grid(alpha=0.3)
  axes[0].set_ylabel(f'validation accuracy ({results["validation_problems"]} problems)')
  axes[1].legend(loc='center left', bbox_to_anchor=(1.01, 0.5), fontsize=8)
  fig.suptitle('Validation sweeps; ringed: the point each method takes to the test table', fontsize=10)
  fig.tight_layout()
  png = io.BytesIO()
  fig.savefig(png, format='png', dpi=110)
  plt.close(fig)
  files.write_atomically(path, png.getvalue())
