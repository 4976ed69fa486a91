"""The paper's table on the embedded pair: every method on the same test problems, drafts and timing code.

Methods: target-only and draft-only decoding, speculative decoding (greedy and sampling), each relaxed rule (topk,
threshold, fly, judge), CoSpec at several `lam`, and the oracle (an upper bound, not a method). For each:
accuracy with a 95% Wilson interval and a paired exact McNemar test against target-only; draft tokens accepted per
target call and target calls per generated token; wall-clock tokens/s and speedup against target-only decoding,
measured in this process at the accuracy run's batch size and at batch size 1 (on `timing.problems` problems),
each the fastest of `timing.repeats` passes.

`run(config, workdir)` writes results.json, table.md and pareto.png into workdir (each atomically, once everything
has been measured, so a failing run leaves an earlier table intact).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import time
from typing import Any, Optional, Sequence

import jax
import ml_collections
import numpy as np
from scipy import stats

from cospec_jax import files, sharding
from cospec_jax.decoding import (AutoregressiveDecoder, DecodeSettings, Exact, RejectionSampling, Sampling,
                                 SpeculativeDecoder, make_rule)
from cospec_jax.decoding.cospec import ArbiterPolicy, CoSpec
from cospec_jax.train import arbiter, counterfactual


@dataclasses.dataclass(frozen=True)
class Method:
  """One row of the table: a one-model decoder (`model` set) or a speculative rule (`rule` set)."""

  name: str
  model: Optional[str] = None  # 'target' or 'draft' for one-model decoding.
  rule: Any = None
  rule_params: Any = None
  row_params: Any = None  # Per-problem rule inputs (the oracle's keep_at_B), sliced with the batch.
  lam: Optional[float] = None
  sampled: bool = False


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
  """95% Wilson score interval for k successes in n trials."""
  if n == 0:
    return 0.0, 1.0
  p = k / n
  center = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return max(center - half, 0.0), min(center + half, 1.0)


def mcnemar(correct: Sequence[bool], reference: Sequence[bool]) -> tuple[int, int, float]:
  """(gained, lost, two-sided exact p) of a paired comparison: problems right only here, right only in reference."""
  correct, reference = np.asarray(correct, bool), np.asarray(reference, bool)
  gained, lost = int(np.sum(correct & ~reference)), int(np.sum(reference & ~correct))
  p = stats.binomtest(gained, gained + lost).pvalue if gained + lost else 1.0
  return gained, lost, float(p)


def methods(config: ml_collections.ConfigDict, policy_params, judge_params, oracle_keep_at_P) -> list[Method]:
  """The table's rows, in order, as `config.table` describes them."""
  t = config.table
  policy = ArbiterPolicy(config.policy.hidden, config.policy.projection)
  sampling = RejectionSampling(Sampling(t.temperature))
  rows = [Method('target-only', model='target'), Method('draft-only', model='draft'),
          Method('spd greedy', rule=Exact()), Method(f'spd sampling T={t.temperature:g}', rule=sampling, sampled=True)]
  rows += [Method(f'{name} {", ".join(f"{k}={v}" for k, v in kwargs.items())}', rule=make_rule(name, **kwargs))
           for name, kwargs in t.relaxed.items()]
  rows.append(Method(f'judge max_harm={t.judge_max_harm:g}', rule=make_rule('judge', max_harm=t.judge_max_harm),
                     rule_params=judge_params))
  rows += [Method(f'cospec lam={lam:g}', rule=CoSpec(Exact(), policy), rule_params={'policy': policy_params,
                                                                                       'lam': float(lam)}, lam=lam)
           for lam in t.lams]
  rows.append(Method('oracle (upper bound)', rule=make_rule('oracle'), row_params={'keep_at_B': oracle_keep_at_P}))
  return rows


def decode(method: Method, target, draft, prompts, batch_size: int, settings: DecodeSettings, gamma: int,
           seed: int, repeats: int = 3, mesh=None) -> dict:
  """Decodes every prompt with `method`; returns completions, counts and the fastest of `repeats` timed passes.
  Every prompt is padded to the longest, so one compiled shape serves all batches, compiled before the clock.
  With a mesh, the params must already be placed on it (arbiter.load_pair)."""
  rng = jax.random.PRNGKey(seed)
  buckets = (max(len(p) for p in prompts),)
  if method.model is not None:
    config, params = target if method.model == 'target' else draft
    decoder = AutoregressiveDecoder(config, settings=settings, mesh=mesh)

    def chunks():
      return decoder.generate_batches(params, prompts, batch_size, rng, buckets)
  else:
    decoder = SpeculativeDecoder(target[0], draft[0], method.rule, gamma, settings, mesh=mesh)

    def chunks():
      return decoder.generate_in_batches(target[1], draft[1], prompts, batch_size, rng, method.rule_params,
                                         method.row_params, buckets)
  next(iter(chunks()))[0].tokens_BxT.block_until_ready()  # Compile.
  seconds = []
  for _ in range(repeats):  # The same seeds every pass, so every pass decodes the same tokens.
    completions, generated, calls = [], 0, 0
    t0 = time.perf_counter()
    for gen, n in chunks():
      st = sharding.fetch(gen.stats)
      completions += gen.completions()[:n]
      generated, calls = generated + int(st.generated_B[:n].sum()), calls + int(st.target_calls_B[:n].sum())
    seconds.append(time.perf_counter() - t0)
  return {'completions': completions, 'generated': generated, 'target_calls': calls, 'seconds': min(seconds)}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Evaluates every method (see module docstring) and writes results.json, table.md, pareto.png to `workdir`."""
  os.makedirs(workdir, exist_ok=True)
  t = config.table
  mesh = sharding.mesh_from_config(config)
  small_batch = 1 if mesh is None else mesh.shape[sharding.DATA]  # The smallest batch the mesh splits.
  target, draft = arbiter.load_pair(config, mesh)
  task = arbiter.load_task(config, config.pair.target_workdir)
  problems = task.problems('test')[:t.num_examples]
  prompts = [task.prompt(p) for p in problems]
  settings = DecodeSettings.for_tokenizer(task.tokenizer, config.rl.max_new_tokens)
  policy_params = arbiter.restore_state(config, config.arbiter_workdir).params
  forks_path = os.path.join(config.arbiter_workdir, arbiter.FORKS_FILE)
  if not os.path.exists(forks_path):
    raise FileNotFoundError(f'The judge is trained on the arbiter\'s counterfactual forks, and {forks_path} does not '
                            'exist: train the arbiter with config.warm_start.problems > 0 first.')
  judge_params = counterfactual.fit_judge(counterfactual.Forks.load(forks_path))
  test_forks = counterfactual.collect(target, draft, task, problems, config.rl.gamma, config.rl.max_new_tokens,
                                      t.batch_size, mesh=mesh)
  rows = []
  for i, method in enumerate(methods(config, policy_params, judge_params, counterfactual.oracle_keep_at(test_forks))):
    full = decode(method, target, draft, prompts, t.batch_size, settings, config.rl.gamma, config.seed + i,
                  t.timing.repeats, mesh)
    n_time = min(t.timing.problems, len(prompts))
    one = decode(dataclasses.replace(method, row_params=None if method.row_params is None else
                                     {k: v[:n_time] for k, v in method.row_params.items()}),
                 target, draft, prompts[:n_time], small_batch, settings, config.rl.gamma, config.seed + i,
                 t.timing.repeats, mesh)
    correct = task.score(full['completions'], problems)
    rows.append({'method': method.name, 'lam': method.lam, 'sampled': method.sampled,
                 'correct': correct.tolist(), 'accuracy': float(correct.mean()),
                 'accuracy_ci95': wilson_interval(int(correct.sum()), len(correct)),
                 'tokens_per_target_call': full['generated'] / max(full['target_calls'], 1),
                 'target_calls_per_token': full['target_calls'] / max(full['generated'], 1),
                 'tokens_per_s': full['generated'] / full['seconds'],
                 'tokens_per_s_batch1': one['generated'] / one['seconds']})
    print(f'  {method.name}: {correct.mean():.1%}', flush=True)
  reference = rows[0]
  for row in rows:
    row['gained'], row['lost'], row['mcnemar_p'] = mcnemar(row['correct'], reference['correct'])
    row['speedup'] = row['tokens_per_s'] / reference['tokens_per_s']
    row['speedup_batch1'] = row['tokens_per_s_batch1'] / reference['tokens_per_s_batch1']
  results = {'problems': len(problems), 'batch_size': t.batch_size, 'small_batch': small_batch,
             'timing_problems': min(t.timing.problems, len(problems)),
             'mesh': None if mesh is None else dict(mesh.shape), 'task': task.name,
             'gamma': config.rl.gamma, 'device': str(jax.devices()[0].device_kind), 'rows': rows}
  files.write_atomically(os.path.join(workdir, 'results.json'), json.dumps(results, indent=1))
  files.write_atomically(os.path.join(workdir, 'table.md'), format_table(results))
  plot_pareto(results, os.path.join(workdir, 'pareto.png'))
  print(format_table(results))
  return results


def format_table(results: dict) -> str:
  """The table as Markdown."""
  small = results.get('small_batch', 1)
  lines = [f'{results["problems"]} test problems, gamma {results["gamma"]}, accuracy batch {results["batch_size"]}, '
           f'batch-{small} timing on {results["timing_problems"]} problems ({results["device"]}).', '',
           '| method | accuracy | 95% CI | +/- vs target | McNemar p | tokens/call | calls/token | speedup | '
           f'speedup (batch {small}) |', '|---|---|---|---|---|---|---|---|---|']
  for r in results['rows']:
    lo, hi = r['accuracy_ci95']
    lines.append(f'| {r["method"]} | {r["accuracy"]:.1%} | {lo:.1%}-{hi:.1%} | +{r["gained"]}/-{r["lost"]} | '
                 f'{r["mcnemar_p"]:.2g} | {r["tokens_per_target_call"]:.2f} | {r["target_calls_per_token"]:.3f} | '
                 f'{r["speedup"]:.2f}x | {r["speedup_batch1"]:.2f}x |')
  return '\n'.join(lines) + '\n'


def plot_pareto(results: dict, path: str) -> None:
  """Accuracy against batch-1 speedup; CoSpec's points joined in order of lam."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7, 4.5))
  cospec = [r for r in results['rows'] if r['lam'] is not None]
  for r in results['rows']:
    lo, hi = r['accuracy_ci95']
    ax.errorbar(r['speedup_batch1'], r['accuracy'], yerr=[[r['accuracy'] - lo], [hi - r['accuracy']]],
                fmt='o' if r['lam'] is None else 's', capsize=2, color='C3' if r['lam'] is not None else 'C0')
    if r['lam'] is None:
      ax.annotate(r['method'], (r['speedup_batch1'], r['accuracy']), fontsize=7, xytext=(4, 2),
                  textcoords='offset points')
  ax.plot([r['speedup_batch1'] for r in cospec], [r['accuracy'] for r in cospec], '-', color='C3',
          label='CoSpec over lam')
  ax.set_xlabel('speedup against target-only decoding (batch 1)')
  ax.set_ylabel('test accuracy')
  ax.legend(loc='lower left')
  ax.grid(alpha=0.3)
  fig.tight_layout()
  png = io.BytesIO()
  fig.savefig(png, format='png', dpi=120)
  plt.close(fig)
  files.write_atomically(path, png.getvalue())
