"""The paper's table on the embedded pair, under a protocol a reviewer accepts: every choice on validation, test
read once.

Methods (families): target-only and draft-only decoding, speculative decoding (greedy; sampling over temperatures),
each relaxed rule over its settings (topk, threshold, fly), two judges (AutoJudge's harm labels, and the fix-aware
labels CoSpec's warm start uses) over their thresholds, CoSpec over `lam` with the supervised warm start alone
("cospec supervised") and with REINFORCE, and the oracle (an upper bound, not a method).

1. Validation. The REINFORCE checkpoint is the most accurate on validation of those the arbiter stage kept (never
   simply the last). Every family is swept over its settings on validation, and one rule picks each family's point
   (`selection.RULE`).
2. Test, once. Each family at its chosen point: accuracy with a 95% Wilson interval and a paired exact McNemar test
   against target-only (and CoSpec against its supervised warm start); draft tokens accepted per target call and
   target calls per generated token; wall-clock tokens/s and speedup against target-only decoding, and seconds per
   verify step against SPD's (net of each call's prefill, host work and first step, timed alike; gross too; and
   round by round, its spread), measured in this process at the accuracy run's batch size (on
   `timing.batch_problems` problems) and at batch size 1 (on `timing.problems`), every row alike: all compiled
   first, then timed in `timing.rounds` rounds interleaved call by call, each call's fastest round counting
   (`time_rows`). On the test split's counterfactual
   forks: the oracle's mismatches, and how often each arbiter's decisions agree with the counterfactual labels, per
   lam (diagnostics: they feed no choice).
3. Transfer. When the data mix in a second family (tasks/arithmetic.py's `units`), target-only, SPD and CoSpec at
   the settings chosen above (the arbiter trained on arithmetic alone) on that family's test split.

The accuracy passes (1-3) decode a split's problems in chunks of `table.batch_size` rows, or, with
`table.continuous`, all through that many rows with finished rows refilled (decoding/continuous.py); the wall-clock
columns are timed in static batches either way (`time_rows`), so a step is one batched target call for every row.

`run(config, workdir)` writes table.md, pareto.png (report.py) and then results.json (each atomically; results.json
last: it is the stage's done marker), once everything has been measured, so a failing run leaves an earlier table
intact.
results.json records the split overlaps it checked, the checkpoint choice, every sweep with its validation figures
(per problem too), per row the chosen setting with the validation figures that chose it, and which other validation
points beat CoSpec's curve on both axes, each with a paired test (`pareto_check`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Optional, Sequence

import jax
import ml_collections
import numpy as np
from scipy import stats

from cospec_jax import files, report, selection, sharding, timing
from cospec_jax.decoding import (AutoregressiveDecoder, DecodeSettings, Exact, RejectionSampling, Sampling,
                                 SpeculativeDecoder, make_rule)
from cospec_jax.decoding.cospec import ArbiterPolicy, CoSpec
from cospec_jax.train import arbiter, counterfactual


@dataclasses.dataclass(frozen=True)
class Method:
  """One point of a family: a one-model decoder (`model` set) or a speculative rule (`rule` set)."""

  name: str
  family: str = ''  # The method it is a setting of ('topk', 'cospec', ...); '' means the name.
  setting: Any = None  # The swept values, e.g. {'k': 2}.
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


def _label(name: str, setting: dict) -> str:
  return f'{name} {", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in setting.items())}'


def families(config: ml_collections.ConfigDict, policies: dict, judges: dict) -> dict[str, list[Method]]:
  """Every method's candidate points, {family: [Method, ...]}, as `config.table` lists their settings.
  `policies`: {'cospec supervised': params, 'cospec': params}; `judges`: {'judge': head, 'judge fix-aware': head}."""
  t = config.table
  policy = ArbiterPolicy(config.policy.hidden, config.policy.projection)
  out = {'target-only': [Method('target-only', model='target')],
         'draft-only': [Method('draft-only', model='draft')],
         'spd greedy': [Method('spd greedy', rule=Exact())],
         'spd sampling': [Method(_label('spd sampling', {'T': float(T)}), 'spd sampling', {'T': float(T)},
                                 rule=RejectionSampling(Sampling(float(T))), sampled=True) for T in t.temperatures]}
  # A relaxed family's points share one rule and pass their settings as rule_params: one compile per family.
  for name, values in t.relaxed.items():
    points = selection.grid(values)
    for s in points:
      make_rule(name, **s)  # Checks each setting's value.
    out[name] = [Method(_label(name, s), name, s, rule=make_rule(name), rule_params=dict(s)) for s in points]
  for name, head in judges.items():
    out[name] = [Method(_label(name, {'max_harm': float(h)}), name, {'max_harm': float(h)}, rule=make_rule('judge'),
                        rule_params={**head, 'max_harm': float(h)}) for h in t.judge_max_harm]
  for name, params in policies.items():
    out[name] = [Method(_label(name, {'lam': float(lam)}), name, {'lam': float(lam)}, rule=CoSpec(Exact(), policy),
                        rule_params={'policy': params, 'lam': float(lam)}, lam=float(lam)) for lam in t.lams]
  return {k: v for k, v in out.items() if v}


def fit_judges(config: ml_collections.ConfigDict, train_forks: counterfactual.Forks) -> dict:
  """The two judges, fitted on training problems' forks: AutoJudge's (harm labels) and the fix-aware one (the warm
  start's labels at config.table.judge_lam)."""
  return {'judge': counterfactual.fit_judge(train_forks, 'harm'),
          'judge fix-aware': counterfactual.fit_judge(train_forks, 'fix_aware', config.table.judge_lam,
                                                      config.warm_start.speed_bonus,
                                                      deviation_cost=config.warm_start.deviation_cost)}


def compiled_pass(method: Method, target, draft, prompts, batch_size: int, settings: DecodeSettings, gamma: int,
                  seed: int, mesh=None, pad_to: int = 0, continuous: bool = False, max_new: Optional[int] = None):
  """A pass over every prompt with `method`, compiled (by a call with a budget of 0, which decodes nothing) before it
  is returned: a generator function whose each item is one decode call's figures and wall-clock seconds, its host
  work included (`run_pass` sums a whole pass's calls). Every prompt is padded to the longest (or to `pad_to`, so
  validation and test share one compiled shape), so one compiled shape serves all batches. The same seeds every
  call, so every call decodes the same tokens. With a mesh, the params must already be placed on it
  (arbiter.load_pair).

  The table's passes decode in consecutive chunks of `batch_size` rows (static batching), one call each;
  `continuous` decodes all prompts through `batch_size` rows in one call, finished rows refilled
  (decoding/continuous.py; `table_batching` compares the two), and then `loop_steps` is None (the loop's iterations
  are not counted). `max_new`: every row's budget (default settings.max_new_tokens); 1 runs each call's prefill,
  host work and one loop step (`time_rows`, for speculative methods)."""
  rng = jax.random.PRNGKey(seed)
  buckets = (max([pad_to] + [len(p) for p in prompts]),)

  def budgets(budget):  # Always passed, so the compiling call below (budget 0) runs the program the pass runs.
    return [settings.max_new_tokens if budget is None else budget] * len(prompts)

  if method.model is not None:
    config, params = target if method.model == 'target' else draft
    decoder = AutoregressiveDecoder(config, settings=settings, mesh=mesh)

    def chunks(budget):
      if continuous:
        return [(decoder.generate_continuous(params, prompts, batch_size, rng, budgets(budget), buckets=buckets),
                 len(prompts))]
      return decoder.generate_batches(params, prompts, batch_size, rng, buckets, budget)
  else:
    decoder = SpeculativeDecoder(target[0], draft[0], method.rule, gamma, settings, mesh=mesh)

    def chunks(budget):
      if continuous:
        return [(decoder.generate_continuous(target[1], draft[1], prompts, batch_size, rng, method.rule_params,
                                             method.row_params, budgets(budget), buckets=buckets), len(prompts))]
      return decoder.generate_in_batches(target[1], draft[1], prompts, batch_size, rng, method.rule_params,
                                         method.row_params, buckets, budget)
  # Compile: the first call with a budget of 0 runs the program every call runs (the budget is a traced input) and
  # decodes nothing, so a pass pays its compile outside its clock without decoding a chunk twice.
  next(iter(chunks(0)))[0].tokens_BxT.block_until_ready()

  def timed_calls():
    calls = iter(chunks(max_new))
    while True:
      t0 = time.perf_counter()  # Each call's clock runs only while it runs: passes may be interleaved call by call.
      try:
        gen, n = next(calls)
      except StopIteration:
        return
      st = sharding.fetch(gen.stats)
      yield {'completions': gen.completions()[:n], 'generated': int(st.generated_B[:n].sum()),
             'target_calls': int(st.target_calls_B[:n].sum()),
             # Iterations of the decode loop: one batched target call each.
             'loop_steps': None if continuous else int(st.target_calls_B.max()),
             'seconds': time.perf_counter() - t0}

  return timed_calls


def run_pass(calls) -> dict:
  """The figures of one whole pass from its calls' (`compiled_pass`): completions in prompt order, counts and seconds
  summed."""
  calls = list(calls)
  steps = [c['loop_steps'] for c in calls]
  return {'completions': [x for c in calls for x in c['completions']],
          'generated': sum(c['generated'] for c in calls), 'target_calls': sum(c['target_calls'] for c in calls),
          'loop_steps': None if None in steps else sum(steps), 'seconds': sum(c['seconds'] for c in calls)}


def release_programs(config) -> None:
  """With `table.continuous`, drops every compiled program once a family is done with a split. Its continuous loops
  (one per split, the number of prompts being part of the shape, each holding a prefill per refill size) are used no
  more, and kept alive, the loops of a whole table ran the process into a crash of XLA's CPU compiler (SIGSEGV,
  compiling a test row, 2026-12-03) where that row alone compiles. Static passes keep theirs: a family's one program
  serves the checkpoint choice, its validation sweep, its test row and the transfer (the same shape)."""
  if config.table.continuous:
    jax.clear_caches()


def decode(method: Method, target, draft, prompts, batch_size: int, settings: DecodeSettings, gamma: int,
           seed: int, repeats: int = 3, mesh=None, pad_to: int = 0, continuous: bool = False) -> dict:
  """Decodes every prompt with `method` (`compiled_pass`, static or `continuous` batching); returns completions,
  counts and the fastest of `repeats` timed passes."""
  timed_calls = compiled_pass(method, target, draft, prompts, batch_size, settings, gamma, seed, mesh, pad_to,
                              continuous)
  passes = [run_pass(timed_calls()) for _ in range(repeats)]
  return dict(passes[0], seconds=min(p['seconds'] for p in passes))


def table_decode(config, method: Method, target, draft, prompts, settings: DecodeSettings, seed: int, mesh,
                 pad_to: int) -> dict:
  """One accuracy pass of the table: `decode` once at the table's batch size and gamma, static or continuous."""
  return decode(method, target, draft, prompts, config.table.batch_size, settings, config.rl.gamma, seed, 1, mesh,
                pad_to, config.table.continuous)


def interleaved_rounds(passes: Sequence, rounds: int, seed: int = 0
                       ) -> tuple[np.ndarray, list[dict], list[np.ndarray]]:
  """Runs `rounds` rounds of the compiled passes (`compiled_pass`), interleaved call by call in orders shuffled turn
  by turn (`timing.shuffled_rounds`). Returns (seconds_PxR: each pass's seconds in each round, each pass's
  first-round figures (`run_pass`), each pass's [rounds, calls] seconds of every call)."""
  calls_P = timing.shuffled_rounds(passes, rounds, seed)  # calls_P[j][r]: pass j's figures of each call in round r.
  firsts = [run_pass(calls[0]) for calls in calls_P]
  seconds_PxRxC = [np.asarray([[c['seconds'] for c in r] for r in calls]) for calls in calls_P]
  return np.asarray([s.sum(axis=1) for s in seconds_PxRxC]), firsts, seconds_PxRxC


def time_rows(config, methods: Sequence[tuple[int, Method]], target, draft, prompts, settings, mesh, pad_to: int,
              small_batch: int) -> list[dict]:
  """Wall-clock of each method at the table's batch (on timing.batch_problems problems) and at `small_batch` (on
  timing.problems), measured alike for every row: all passes are compiled first, then timed in timing.rounds rounds,
  interleaved call by call (`interleaved_rounds`), and each pass's time is the sum over its decode calls of each
  call's fastest round, so a slow spell of the machine is dropped call by call rather than whole passes at a time.

  A speculative method's time per loop step (`seconds_per_step`: per batched target call) is net of what each call
  costs besides its steps: the prefill of both models, the host's work and the loop's first step, timed in the same
  rounds by the same compiled program with a budget of 1 new token, which runs one step per call
  (`seconds_one_step`); so it is the time of every step after each call's first. Charged to the steps, that cost
  made every rule that keeps more tokens per call (fewer steps per answer) look slower per step
  (`seconds_per_step_gross` keeps it); a budget of 0 (no step) left in it about 2 ms per call at batch 1 that only
  calls which decode pay (2026-12-04, this pair)."""
  t = config.table
  subsets = {'': (t.batch_size, prompts[:t.timing.batch_problems]),
             '_batch1': (small_batch, prompts[:t.timing.problems])}
  passes, keys = [], []
  for j, (i, method) in enumerate(methods):
    for suffix, (batch, some) in subsets.items():
      m = method if method.row_params is None else dataclasses.replace(
          method, row_params={k: v[:len(some)] for k, v in method.row_params.items()})
      for budget in (None,) if method.model is not None else (None, 1):
        passes.append(compiled_pass(m, target, draft, some, batch, settings, config.rl.gamma, config.seed + i, mesh,
                                    pad_to if suffix == '' else 0, max_new=budget))
        keys.append((j, suffix, budget))
  seconds_PxR, firsts, seconds_PxRxC = interleaved_rounds(passes, t.timing.rounds)
  timed = {key: (first, seconds_R, float(calls_RxC.min(axis=0).sum()))
           for key, first, seconds_R, calls_RxC in zip(keys, firsts, seconds_PxR, seconds_PxRxC)}
  out = []
  for j in range(len(methods)):
    figures = {}
    for suffix in subsets:
      first, seconds_R, seconds = timed[(j, suffix, None)]
      figures[f'tokens_per_s{suffix}'] = first['generated'] / seconds
      steps = max(first['loop_steps'], 1)
      gross = seconds / steps  # Per batched target call, the call's fixed cost included.
      figures[f'seconds_per_step{suffix}'] = gross
      if (j, suffix, 1) in timed:  # A speculative method: its one-step calls were timed too.
        one, one_R, one_seconds = timed[(j, suffix, 1)]
        later = steps - one['loop_steps']  # The steps after each call's first.
        figures.update({f'seconds_per_step_gross{suffix}': gross, f'seconds_one_step{suffix}': one_seconds,
                        # None: the one-step calls timed no faster than the whole decode (noise on tiny models, or
                        # calls of one step each); no rate is computed from it.
                        f'seconds_per_step{suffix}': ((seconds - one_seconds) / later
                                                      if seconds > one_seconds and later > 0 else None),
                        # Each round's own net time per step (None where that round's one-step pass was the longer).
                        f'seconds_per_step_rounds{suffix}': [(s - f) / later if s > f and later > 0 else None
                                                             for s, f in zip(seconds_R, one_R)]})
    out.append(figures)
  return out


def step_rate_rounds(spd_R: Sequence, row_R: Sequence) -> Optional[list[float]]:
  """[min, median, max] over the timing rounds of SPD's time per step over the row's, each round against itself (a
  slow spell that meets both passes of a round cancels); None when no round has both."""
  ratios = [s / r for s, r in zip(spd_R, row_R) if s is not None and r is not None]
  return [float(np.min(ratios)), float(np.median(ratios)), float(np.max(ratios))] if ratios else None


def _row(method: Method, out: dict, correct: np.ndarray) -> dict:
  """The figures of one decoded method (accuracy, tokens per call; tokens/s of this pass)."""
  return {'method': method.name, 'family': method.family or method.name, 'setting': method.setting,
          'lam': method.lam, 'sampled': method.sampled, 'correct': correct.tolist(),
          'accuracy': float(correct.mean()), 'accuracy_ci95': wilson_interval(int(correct.sum()), len(correct)),
          'tokens_per_target_call': out['generated'] / max(out['target_calls'], 1),
          'target_calls_per_token': out['target_calls'] / max(out['generated'], 1),
          'tokens_per_s': out['generated'] / out['seconds']}


def _summary(row: dict) -> dict:
  return {k: row[k] for k in ('method', 'setting', 'accuracy', 'tokens_per_target_call', 'tokens_per_s')}


def choose_arbiter_step(config, target, draft, task, problems, prompts, settings, mesh, pad_to: int = 0
                        ) -> tuple[int, list[dict]]:
  """The REINFORCE checkpoint (step > 0) most accurate on validation at lam = 0 (`selection.choose_step`), of the
  steps the arbiter stage recorded as restoring; returns (step, every step's validation figures)."""
  steps = [s for s in arbiter.finished_steps(config, config.arbiter_workdir) if s > 0]
  if not steps:
    raise ValueError(f'The arbiter in {config.arbiter_workdir} kept no REINFORCE checkpoint (step > 0); train it with '
                     'config.rl.steps > 0.')
  policy = ArbiterPolicy(config.policy.hidden, config.policy.projection)
  points = []
  for step in steps:
    params = arbiter.restore_state(config, config.arbiter_workdir, step).params
    method = Method(f'cospec step {step}', rule=CoSpec(Exact(), policy), rule_params={'policy': params, 'lam': 0.0})
    out = table_decode(config, method, target, draft, prompts, settings, config.seed, mesh, pad_to)
    correct = task.score(out['completions'], problems)
    points.append({'step': step, 'accuracy': float(correct.mean()),
                   'tokens_per_target_call': out['generated'] / max(out['target_calls'], 1)})
    print(f'  validation, arbiter step {step}: {correct.mean():.1%}, {points[-1]["tokens_per_target_call"]:.2f} '
          'tokens/call', flush=True)
  release_programs(config)
  return points[selection.choose_step(points)]['step'], points


def sweep(config, points: Sequence[Method], seed_offset: int, target, draft, task, validation, prompts, settings, mesh,
          pad_to: int) -> list[dict]:
  """Each point's validation figures (one timed pass; compiled before the clock) and per-problem correctness; without
  a validation split, only the settings."""
  if validation is None:
    return [{'method': m.name, 'setting': m.setting} for m in points]
  out_points = []
  for method in points:
    out = table_decode(config, method, target, draft, prompts, settings, config.seed + seed_offset, mesh, pad_to)
    row = _row(method, out, task.score(out['completions'], validation))
    out_points.append(dict(_summary(row), correct=row['correct']))  # Per problem: for `pareto_check`'s tests.
  print(f'  validation, {points[0].family or points[0].name}: ' + ', '.join(
      f'{p["method"]} {p["accuracy"]:.1%}/{p["tokens_per_target_call"]:.2f}' for p in out_points), flush=True)
  release_programs(config)
  return out_points


def test_row(config, method: Method, seed_offset: int, target, draft, task, test, prompts, settings, mesh, pad_to: int,
             sweeps: dict) -> dict:
  """`method` on the test split: accuracy and tokens per call, with the validation figures that chose it (its
  wall-clock columns come from `time_rows`)."""
  full = table_decode(config, method, target, draft, prompts, settings, config.seed + seed_offset, mesh, pad_to)
  row = _row(method, full, task.score(full['completions'], test))
  row['validation'] = next((_summary(p) for p in sweeps.get(row['family'], [])
                           if p['method'] == method.name and 'accuracy' in p), None)
  print(f'  test, {method.name}: {row["accuracy"]:.1%}', flush=True)
  release_programs(config)
  return row


TRANSFER_FAMILIES = ('target-only', 'spd greedy', 'cospec')


def _other_families(task) -> list[str]:
  """The families of `task`'s data besides its own (the transfer task); none for tasks without families."""
  return [f for f in getattr(task, 'families', lambda: [])() if f != task.name]


def transfer_rows(config, task, chosen: Sequence[tuple[int, Method]], target, draft, settings, mesh, pad_to: int
                  ) -> dict:
  """Target-only, SPD and CoSpec, each at the setting chosen on the main task's validation (CoSpec's arbiter was
  trained on the main task alone), on the test split of each other family in the data (the transfer task); accuracy
  with paired tests against target-only. {family: {'problems': n, 'rows': [...]}}."""
  out = {}
  for family in _other_families(task):
    family_task = task.for_family(family)
    problems = family_task.problems('test')
    prompts = [family_task.prompt(p) for p in problems]
    pad = max([pad_to] + [len(p) for p in prompts])  # The main table's compiled shape when the prompts fit it.
    rows = []
    for i, method in chosen:
      if (method.family or method.name) not in TRANSFER_FAMILIES:
        continue
      decoded = table_decode(config, method, target, draft, prompts, settings, config.seed + i, mesh, pad)
      rows.append(_row(method, decoded, family_task.score(decoded['completions'], problems)))
    release_programs(config)
    for row in rows:
      row['gained'], row['lost'], row['mcnemar_p'] = mcnemar(row['correct'], rows[0]['correct'])
    print(f'  transfer to {family}: ' + ', '.join(f'{r["method"]} {r["accuracy"]:.1%}/{r["tokens_per_target_call"]:.2f}'
                                                 f' (+{r["gained"]}/-{r["lost"]})' for r in rows), flush=True)
    out[family] = {'problems': len(problems), 'rows': rows}
  return out


def curve(sweeps: dict, family: str) -> list[dict]:
  """`family`'s validation sweep over lam against target-only's accuracy and SPD's tokens per call."""
  target, spd = sweeps['target-only'][0], sweeps['spd greedy'][0]
  return [{'lam': p['setting']['lam'], 'accuracy': p['accuracy'], 'tokens_per_target_call': p['tokens_per_target_call'],
           'accuracy_minus_target': p['accuracy'] - target['accuracy'],
           'tokens_per_call_over_spd': p['tokens_per_target_call'] / spd['tokens_per_target_call']}
          for p in sweeps.get(family, [])]


def pareto_check(sweeps: dict, family: str = 'cospec') -> dict:
  """Whether any other validation point beats `family`'s curve by more than chance. A point beats the curve when it
  is more accurate than one of the curve's points and keeps more tokens per target call; each such point is tested
  (exact McNemar, paired over the validation problems) against the curve point it beats with the smallest p.
  {'family', 'points': other points checked, 'beating': [{'method', 'accuracy', 'tokens_per_target_call', 'beats',
  'beaten_accuracy', 'beaten_tokens_per_target_call', 'gained', 'lost', 'mcnemar_p'}, ...]}. No p is corrected for
  the number of points checked."""
  ours = [c for c in sweeps.get(family, []) if 'correct' in c]
  others = [p for f, points in sweeps.items() if f != family for p in points if 'correct' in p]
  beating = []
  for p in others:
    tests = [(mcnemar(p['correct'], c['correct']), c) for c in ours
             if p['accuracy'] > c['accuracy'] and p['tokens_per_target_call'] > c['tokens_per_target_call']]
    if not tests:
      continue
    (gained, lost, pvalue), c = min(tests, key=lambda t: (t[0][2], t[1]['accuracy']))
    beating.append({'method': p['method'], 'accuracy': p['accuracy'],
                    'tokens_per_target_call': p['tokens_per_target_call'], 'beats': c['method'],
                    'beaten_accuracy': c['accuracy'], 'beaten_tokens_per_target_call': c['tokens_per_target_call'],
                    'gained': gained, 'lost': lost, 'mcnemar_p': pvalue})
  return {'family': family, 'points': len(others), 'beating': beating}


def fork_counts(forks: counterfactual.Forks) -> dict:
  """How the counterfactual forks split: keeping the draft fixes a wrong answer, breaks a right one, or changes
  nothing (neutral: the harmless disagreements, e.g. of wording)."""
  n = len(forks.problem_N)
  fix_N = forks.fork_right_N & ~forks.target_right_N
  counts = {'forks': int(n), 'problems': int(len(forks.target_right_P)), 'fix': int(np.sum(fix_N)),
            'break': int(np.sum(forks.target_right_N & ~forks.fork_right_N)),
            'neutral': int(np.sum(forks.fork_right_N == forks.target_right_N))}
  counts['neutral_share'] = counts['neutral'] / max(n, 1)
  wrong = ~forks.target_right_P
  fixable = np.zeros_like(wrong)
  fixable[forks.problem_N[fix_N]] = True
  counts['oracle_fixes_share_of_wrong'] = float(fixable[wrong].mean()) if wrong.any() else 0.0
  return counts


def split_problems(task, split: str) -> Optional[list]:
  """The task's `split`, or None when it has none (HumanEval has only test)."""
  try:
    return task.problems(split)
  except ValueError:
    return None


def _unchosen_step(config, task, t) -> tuple[int, list]:
  """Without a validation split nothing can be chosen: every family must list one setting (chosen on another
  task's validation split), and the arbiter is config.table.arbiter_step (-1: the last step its stage recorded)."""
  several = {k: v for k, v in (('temperatures', t.temperatures), ('judge_max_harm', t.judge_max_harm),
                              ('lams', t.lams)) if len(v) > 1}
  several.update({k: v for k, v in t.relaxed.items() if len(selection.grid(v)) > 1})
  if several:
    raise ValueError(f'Task {task.name} has no validation split to choose settings on, but config.table lists '
                     f'several for {sorted(several)}: give one value each (chosen on another task\'s validation).')
  step = t.get('arbiter_step', -1)
  return (arbiter.finished_steps(config, config.arbiter_workdir)[-1] if step < 0 else step), []


def run(config: ml_collections.ConfigDict, workdir: str, pair=None) -> dict:
  """Chooses every setting on validation, then evaluates each method once on test (see module docstring); writes
  table.md, pareto.png and results.json to `workdir`. `pair`: (target, draft) already loaded (`arbiter.load_pair`)."""
  os.makedirs(workdir, exist_ok=True)
  t = config.table
  mesh = sharding.mesh_from_config(config)
  small_batch = 1 if mesh is None else mesh.shape[sharding.DATA]  # The smallest batch the mesh splits.
  target, draft = pair or arbiter.load_pair(config, mesh)
  task = arbiter.load_task(config, config.pair.target_workdir)
  splits = {s: split_problems(task, s) for s in ('train', 'validation', 'test')}
  checked = {s: v for s, v in splits.items() if v is not None}
  for family in _other_families(task):  # The transfer family's problems too.
    checked = {s: v + task.for_family(family).problems(s) for s, v in checked.items()}
  overlap = selection.split_overlap(checked)
  if any(n for counts in overlap.values() for n in counts.values()):
    raise ValueError(f'The splits of task {task.name} share problems ({overlap}); the comparison needs disjoint '
                     'train, validation and test splits.')
  test = splits['test'][:t.num_examples]
  validation = None if splits['validation'] is None else splits['validation'][:t.validation_examples]
  settings = DecodeSettings.for_tokenizer(task.tokenizer, config.rl.max_new_tokens)
  # One compiled shape for validation and test.
  val_prompts = [task.prompt(p) for p in validation or []]  # Prompted once: a real task's are few-shot templates.
  test_prompts = [task.prompt(p) for p in test]
  pad_to = max(len(p) for p in val_prompts + test_prompts)
  forks_path = os.path.join(config.arbiter_workdir, arbiter.FORKS_FILE)
  if not os.path.exists(forks_path):
    raise FileNotFoundError(f'The judges are trained on the arbiter\'s counterfactual forks, and {forks_path} does '
                            'not exist: train the arbiter with config.warm_start.problems > 0 first.')
  train_forks = counterfactual.Forks.load(forks_path)  # Forks of training problems only.
  judges = fit_judges(config, train_forks)

  # 1. Validation: the checkpoint, then every family's sweep and its chosen point.
  if validation is None:
    step, step_points = _unchosen_step(config, task, t)
  else:
    step, step_points = choose_arbiter_step(config, target, draft, task, validation, val_prompts, settings, mesh,
                                            pad_to)
  policies = {'cospec supervised': arbiter.restore_state(config, config.arbiter_workdir, 0).params,
              'cospec': arbiter.restore_state(config, config.arbiter_workdir, step).params}
  candidates = families(config, policies, judges)
  sweeps = {family: sweep(config, points, i, target, draft, task, validation, val_prompts, settings, mesh, pad_to)
            for i, (family, points) in enumerate(candidates.items())}
  spd_tau = None if validation is None else sweeps['spd greedy'][0]['tokens_per_target_call']
  chosen = [(i, points[0 if validation is None else selection.choose(sweeps[family], spd_tau)])
            for i, (family, points) in enumerate(candidates.items())]

  # 2. Test, read once: each family at its chosen point, and the oracle.
  test_forks = counterfactual.collect(target, draft, task, test, config.rl.gamma, config.rl.max_new_tokens,
                                      t.batch_size, mesh=mesh)
  oracle = Method('oracle (upper bound)', rule=make_rule('oracle'),
                  row_params={'keep_at_B': counterfactual.oracle_keep_at(test_forks)})
  tested = chosen + [(len(chosen), oracle)]
  rows = [test_row(config, method, i, target, draft, task, test, test_prompts, settings, mesh, pad_to, sweeps)
          for i, method in tested]
  for row, timing in zip(rows, time_rows(config, tested, target, draft, test_prompts, settings, mesh, pad_to,
                                         small_batch)):
    row.update(timing)
  reference = rows[0]
  for row in rows:
    row['gained'], row['lost'], row['mcnemar_p'] = mcnemar(row['correct'], reference['correct'])
    row['speedup'] = row['tokens_per_s'] / reference['tokens_per_s']
    row['speedup_batch1'] = row['tokens_per_s_batch1'] / reference['tokens_per_s_batch1']
  spd = next((r for r in rows if r['family'] == 'spd greedy'), None)
  for row in rows:  # How fast each rule runs one verify step, against SPD's (1 = as fast; the arbiter's cost).
    if spd is not None and row['family'] not in ('target-only', 'draft-only'):
      for key in ('', '_batch1', '_gross', '_gross_batch1'):  # Net of each call's fixed cost, and gross.
        spd_s, row_s = spd[f'seconds_per_step{key}'], row[f'seconds_per_step{key}']
        row[f'step_rate_vs_spd{key}'] = None if spd_s is None or row_s is None else spd_s / row_s
      for key in ('', '_batch1'):  # The net rate round by round: its spread is the column's resolution.
        row[f'step_rate_vs_spd_rounds{key}'] = step_rate_rounds(spd[f'seconds_per_step_rounds{key}'],
                                                                row[f'seconds_per_step_rounds{key}'])
  transfer = transfer_rows(config, task, chosen, target, draft, settings, mesh, pad_to)
  by_family = {r['family']: r for r in rows}
  paired = {}
  if 'cospec' in by_family and 'cospec supervised' in by_family:
    gained, lost, p = mcnemar(by_family['cospec']['correct'], by_family['cospec supervised']['correct'])
    paired['cospec vs cospec supervised'] = {'gained': gained, 'lost': lost, 'mcnemar_p': p}
  policy = ArbiterPolicy(config.policy.hidden, config.policy.projection)
  agreement = {name: {f'{lam:g}': counterfactual.oracle_agreement(policy, params, test_forks, float(lam),
                                                                   config.warm_start.speed_bonus,
                                                                   config.warm_start.deviation_cost)
                      for lam in t.lams} for name, params in policies.items()}
  results = {'problems': len(test), 'validation_problems': len(validation or []), 'batch_size': t.batch_size,
             'continuous': t.continuous,
             'small_batch': small_batch, 'timing_problems': min(t.timing.problems, len(test)),
             'timing_batch_problems': min(t.timing.batch_problems, len(test)), 'timing_rounds': t.timing.rounds,
             'mesh': None if mesh is None else dict(mesh.shape), 'task': task.name, 'gamma': config.rl.gamma,
             'device': str(jax.devices()[0].device_kind),
             'split_sizes': {s: len(v) for s, v in splits.items() if v is not None},
             'overlap': overlap, 'choice_rule': selection.RULE, 'spd_validation_tokens_per_call': spd_tau,
             'arbiter_step': step, 'arbiter_steps_validation': step_points, 'sweeps': sweeps, 'rows': rows,
             'paired': paired, 'oracle_agreement': agreement, 'transfer': transfer,
             'train_forks': fork_counts(train_forks), 'test_forks': fork_counts(test_forks),
             'curves': {f: curve(sweeps, f) for f in ('cospec', 'cospec supervised') if validation is not None},
             'pareto_check': None if validation is None else pareto_check(sweeps)}
  files.write_atomically(os.path.join(workdir, 'table.md'), report.format_table(results))
  report.plot_pareto(results, os.path.join(workdir, 'pareto.png'))
  files.write_atomically(os.path.join(workdir, 'results.json'), json.dumps(results, indent=1))  # The done marker.
  print(report.format_table(results))
  return results
