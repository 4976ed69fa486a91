"""The seed study: does REINFORCE go beyond imitation? Several pairs, several arbiter seeds, the ablations.

For each pair seed a draft and a target are trained (same data, other init and batch order); their counterfactual
forks are collected once and shared by every arbiter of the pair. For each arbiter seed, three arbiters are trained:

  supervised+reinforce  the warm start (fit to the forks' labels), then REINFORCE (the shipped method, whose policy
                        reads the scalar features alone);
  reinforce             REINFORCE from a fresh policy (input standardization from the forks' features, no label);
  hidden states         supervised+reinforce with a policy that also reads both models' hidden states, projected to
                        HIDDEN_STATE_PROJECTION each (the method as an earlier study ran it).

and five arms are evaluated (ABLATIONS): those three, 'supervised' (step 0 of the first: the warm start alone) and
'sampled decisions' (the first, its actions sampled as in training instead of greedy). An arm's REINFORCE
checkpoint is the most accurate on validation at lam = 0 (`selection.choose_step`, steps > 0); then the test split
is read once, at each of `study.lams`. Before any of it, REINFORCE's settings (`study.tuning.grid`) are chosen on
validation with an arbiter seed of their own on the first pair, so no study run's validation figure was used to pick
them.

The Pareto check (`study.pareto_check`, validation only): on each pair, every baseline of the table swept over its
grid (config.arbiter.table; the judges fitted on the pair's forks), and for each arbiter seed the shipped arm's
CoSpec curve over the table's lams at its chosen checkpoint; study_report tests every baseline point above a curve
(`evaluate.pareto_check`).

Layout of <workdir> (every stage writes its done marker last, atomically; a rerun skips what is done, and never
rewrites a finished run):
  tfds/                          the data set, one copy
  pair<s>/draft, pair<s>/target  the pair (trainer.train; on a CPU the draft trains in a second process beside
                                 the target, its output in pair<s>/draft/train.log)
  pair<s>/counterfactual_forks.npz
  pair<s>/reference.json         target-only and plain SPD on validation and test
  pair<s>/baselines.json         the Pareto check's baseline sweeps on validation
  pair<s>/<run>/seed<a>/         one arbiter's workdir; eval.json: its arms' figures; curve.json: the Pareto
                                 check's CoSpec curve on validation (supervised+reinforce runs)
  tuning/<label>/                the settings grid's arbiters; tuning/tuning.json the choice
  study.json, study.md, study.png  written when every run is done (cospec_jax/study_report.py)
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time

import ml_collections
import numpy as np

from cospec_jax import evaluate, files, pipeline, selection, study_report
from cospec_jax.decoding import DecodeSettings, Exact
from cospec_jax.decoding.cospec import ArbiterPolicy, CoSpec
from cospec_jax.train import arbiter, beside, counterfactual, trainer

HIDDEN_STATE_PROJECTION = 16  # The 'hidden states' run's width per model (the earlier study's policy).
# Training runs: how each differs from the arbiter config (configs/train_arbiter.py: policy.projection=0).
RUNS = {
    'supervised+reinforce': {},
    'reinforce': {'warm_start.steps': 0},
    'hidden states': {'policy.projection': HIDDEN_STATE_PROJECTION},
}
# Arms: (training run, which checkpoint, sampled decisions at evaluation).
ABLATIONS = {
    'supervised': ('supervised+reinforce', 'warm start', False),
    'supervised+reinforce': ('supervised+reinforce', 'best on validation', False),
    'reinforce': ('reinforce', 'best on validation', False),
    'hidden states': ('hidden states', 'best on validation', False),
    'sampled decisions': ('supervised+reinforce', 'best on validation', True),
}
EVAL_FILE = 'eval.json'
CURVE_FILE = 'curve.json'


def _bits(correct) -> str:
  return ''.join('1' if c else '0' for c in correct)


def _dir_name(name: str) -> str:
  return name.replace('+', '_').replace(' ', '_')


class Study:
  """The study's runs under `workdir` for `config` (configs/study.py)."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self.config, self.workdir, self.s = config, workdir, config.study
    self.data_dir = config.data_dir or os.path.join(workdir, 'tfds')
    self.t_start = time.time()
    self.done_runs = 0

  def log(self, message: str) -> None:
    print(f'[study {time.time() - self.t_start:5.0f} s] {message}', flush=True)

  # The pair of one pair seed.
  def pair_dir(self, pair_seed: int) -> str:
    return os.path.join(self.workdir, f'pair{pair_seed}')

  def train_pair(self, pair_seed: int) -> None:
    sections, dirs = {}, {}
    for name in ('draft', 'target'):
      dirs[name] = os.path.join(self.pair_dir(pair_seed), name)
      if not pipeline.model_done(dirs[name]):
        sections[name] = copy.deepcopy(self.config[name])
        sections[name].seed += self.s.seed_stride * pair_seed
        sections[name].data.data_dir = self.data_dir

    def train(name):
      t0 = time.time()
      trainer.train(sections[name], dirs[name], f'--config.{name}')
      self.log(f'pair {pair_seed}: {name} trained in {time.time() - t0:.0f} s')

    if not beside.wanted(self.s.train_pair_concurrently, len(sections)):
      for name in sections:
        train(name)
      return
    with beside.Training(sections['draft'], dirs['draft'], '--config.draft',
                         '--config.study.train_pair_concurrently') as draft:
      self.log(f'pair {pair_seed}: draft training in a second process (its output: {draft.log_path})')
      train('target')
    self.log(f'pair {pair_seed}: draft trained in {draft.seconds:.0f} s, beside the target')

  def arbiter_config(self, pair_seed: int, arbiter_seed: int, workdir: str, overrides: dict
                     ) -> ml_collections.ConfigDict:
    config = copy.deepcopy(self.config.arbiter)
    config.seed += self.s.seed_stride * arbiter_seed
    config.data.data_dir = self.data_dir
    config.pair.target_workdir = os.path.join(self.pair_dir(pair_seed), 'target')
    config.pair.draft_workdir = os.path.join(self.pair_dir(pair_seed), 'draft')
    config.arbiter_workdir = workdir
    for key, value in overrides.items():
      section, field = key.split('.')
      config[section][field] = value
    return config

  def forks(self, pair_seed: int, config, target, draft, task) -> str:
    """The pair's counterfactual forks of the first warm_start.problems training problems (collected once)."""
    path = os.path.join(self.pair_dir(pair_seed), arbiter.FORKS_FILE)
    if not os.path.exists(path):
      t0 = time.time()
      ws = config.warm_start
      counterfactual.collect(target, draft, task, task.problems('train')[:ws.problems], config.rl.gamma,
                             config.rl.max_new_tokens, ws.batch_size).save(path)
      self.log(f'pair {pair_seed}: forks collected in {time.time() - t0:.0f} s')
    return path

  def train_arbiter(self, config, forks_path: str) -> None:
    """Trains one arbiter (resuming; skipped when its stage is done), starting from the pair's forks."""
    workdir = config.arbiter_workdir
    if pipeline.arbiter_done(config, workdir):
      return
    os.makedirs(workdir, exist_ok=True)
    if not os.path.exists(os.path.join(workdir, arbiter.FORKS_FILE)):
      try:  # The same bytes for every arbiter of the pair: a hard link where the file system has them.
        os.link(forks_path, os.path.join(workdir, arbiter.FORKS_FILE))
      except OSError:
        shutil.copyfile(forks_path, os.path.join(workdir, arbiter.FORKS_FILE))
    config = copy.deepcopy(config)
    config.rl.progress_bar = False
    arbiter.train_arbiter(config, workdir, '--config.arbiter')

  # Evaluation.
  def splits(self, task) -> dict:
    t = self.config.arbiter.table  # The table's split sizes and batch: one protocol for the table and the study.
    validation = task.problems('validation')[:t.validation_examples]
    test = task.problems('test')[:t.num_examples]
    prompts = {name: [task.prompt(p) for p in problems] for name, problems in
               (('validation', validation), ('test', test))}
    pad_to = max(len(p) for ps in prompts.values() for p in ps)  # One compiled shape for both splits.
    return {'problems': {'validation': validation, 'test': test}, 'prompts': prompts, 'pad_to': pad_to}

  def decode(self, method: evaluate.Method, config, target, draft, task, data: dict, split: str, seed: int) -> dict:
    settings = DecodeSettings.for_tokenizer(task.tokenizer, config.rl.max_new_tokens)
    out = evaluate.decode(method, target, draft, data['prompts'][split], config.table.batch_size, settings,
                          config.rl.gamma, seed, 1, None, data['pad_to'])
    correct = task.score(out['completions'], data['problems'][split])
    return {'accuracy': float(correct.mean()),
            'tokens_per_target_call': out['generated'] / max(out['target_calls'], 1), 'correct': _bits(correct)}

  def reference(self, pair_seed: int, config, target, draft, task, data: dict) -> dict:
    """Target-only and plain SPD (greedy) of the pair, on validation and test."""
    path = os.path.join(self.pair_dir(pair_seed), 'reference.json')
    if os.path.exists(path):
      with open(path) as f:
        return json.load(f)
    methods = {'target-only': evaluate.Method('target-only', model='target'),
               'spd greedy': evaluate.Method('spd greedy', rule=Exact())}
    out = {name: {split: self.decode(m, config, target, draft, task, data, split, config.seed)
                  for split in ('validation', 'test')} for name, m in methods.items()}
    files.write_atomically(path, json.dumps(out))
    self.log(f'pair {pair_seed}: target-only {out["target-only"]["test"]["accuracy"]:.1%} on test, SPD '
             f'{out["spd greedy"]["test"]["tokens_per_target_call"]:.2f} tokens/call')
    return out

  def baselines(self, pair_seed: int, config, target, draft, task, data: dict, forks_path: str) -> dict:
    """Every baseline family of the table (config.table's grids; both judges fitted on the pair's forks), each point
    on validation: {family: [point, ...]}. Written to pair<s>/baselines.json once."""
    path = os.path.join(self.pair_dir(pair_seed), 'baselines.json')
    if os.path.exists(path):
      with open(path) as f:
        return json.load(f)
    t0 = time.time()
    judges = evaluate.fit_judges(config, counterfactual.Forks.load(forks_path))
    out = {family: [dict(self.decode(m, config, target, draft, task, data, 'validation', config.seed + i),
                         method=m.name) for m in points]
           for i, (family, points) in enumerate(evaluate.families(config, {}, judges).items())}
    files.write_atomically(path, json.dumps(out))
    self.log(f'pair {pair_seed}: {sum(map(len, out.values()))} baseline points on validation in '
             f'{time.time() - t0:.0f} s')
    return out

  def curve(self, config, result: dict, target, draft, task, data: dict) -> dict:
    """The shipped arm's CoSpec curve on validation over the table's lams, at the checkpoint its arm chose:
    {'step', 'points'}. Written to <arbiter workdir>/curve.json once."""
    path = os.path.join(config.arbiter_workdir, CURVE_FILE)
    if os.path.exists(path):
      with open(path) as f:
        return json.load(f)
    step = result['arms']['supervised+reinforce']['step']
    params = arbiter.restore_state(config, config.arbiter_workdir, step).params
    methods = evaluate.families(config, {'cospec': params}, {})['cospec']  # The table's points, one per lam.
    points = [dict(self.decode(m, config, target, draft, task, data, 'validation', config.seed), method=m.name,
                   lam=m.lam) for m in methods]
    out = {'step': step, 'points': points}
    files.write_atomically(path, json.dumps(out))
    return out

  def choose_step(self, config, target, draft, task, data, steps, sampled: bool) -> tuple[int, list[dict]]:
    policy = ArbiterPolicy(config.policy.hidden, config.policy.projection)
    points = []
    for step in steps:
      params = arbiter.restore_state(config, config.arbiter_workdir, step).params
      method = evaluate.Method(f'step {step}', rule=CoSpec(Exact(), policy, sampled),
                               rule_params={'policy': params, 'lam': 0.0})
      points.append(dict(self.decode(method, config, target, draft, task, data, 'validation', config.seed),
                         step=step))
    return points[selection.choose_step(points)]['step'], points

  def evaluate_run(self, config, run: str, target, draft, task, data, read_test: bool = True) -> dict:
    """Every arm of training run `run` (ABLATIONS): the checkpoint on validation, then test at each of study.lams.
    Written to <arbiter workdir>/eval.json; an existing one is returned as it is."""
    path = os.path.join(config.arbiter_workdir, EVAL_FILE)
    if os.path.exists(path):
      with open(path) as f:
        return json.load(f)
    recorded = arbiter.finished_steps(config, config.arbiter_workdir)
    policy = ArbiterPolicy(config.policy.hidden, config.policy.projection)
    arms = {}
    for name, (arm_run, which, sampled) in ABLATIONS.items():
      if arm_run != run or name not in self.s.ablations:
        continue
      candidates = [0] if which == 'warm start' else [s for s in recorded if s > 0]
      step, points = self.choose_step(config, target, draft, task, data, candidates, sampled)
      arm = {'step': step, 'validation_steps': points, 'validation': next(p for p in points if p['step'] == step)}
      if read_test:
        params = arbiter.restore_state(config, config.arbiter_workdir, step).params
        arm['test'] = {f'{lam:g}': self.decode(
            evaluate.Method(name, rule=CoSpec(Exact(), policy, sampled),
                            rule_params={'policy': params, 'lam': float(lam)}),
            config, target, draft, task, data, 'test', config.seed) for lam in self.s.lams}
      arms[name] = arm
    out = {'run': run, 'settings': _run_settings(config), 'arms': arms}
    files.write_atomically(path, json.dumps(out))
    return out

  # The settings grid for REINFORCE, on validation.
  def tune(self, target, draft, task, data, forks_path: str) -> dict:
    """REINFORCE's settings: each point of study.tuning.grid trains a supervised+reinforce arbiter (pair seed 0,
    arbiter seed study.tuning.arbiter_seed) and is scored by its best checkpoint's validation accuracy at lam = 0
    (ties: more tokens per call, then the earlier point). A grid of one point is taken as it is."""
    points = selection.grid(self.s.tuning.grid.to_dict())
    if len(points) == 1:
      return {'chosen': points[0], 'points': []}
    path = os.path.join(self.workdir, 'tuning', 'tuning.json')
    if os.path.exists(path):
      with open(path) as f:
        tuning = json.load(f)
      if [p['setting'] for p in tuning['points']] != json.loads(json.dumps(points)):
        raise ValueError(f'{path} chose among {[p["setting"] for p in tuning["points"]]}, but study.tuning.grid now '
                         f'gives {points}; use a new --workdir (the study\'s runs used the old choice).')
      return tuning
    pair_seed = self.s.pair_seeds[0]
    scored = []
    for point in points:
      label = ','.join(f'{k}={v}' for k, v in point.items())
      workdir = os.path.join(self.workdir, 'tuning', label)
      config = self.arbiter_config(pair_seed, self.s.tuning.arbiter_seed, workdir,
                                   {f'rl.{k}': v for k, v in point.items()})
      self.train_arbiter(config, forks_path)
      arm = self.evaluate_run(config, 'supervised+reinforce', target, draft, task, data,
                              read_test=False)['arms']['supervised+reinforce']
      scored.append({'setting': point, 'step': arm['step'], 'accuracy': arm['validation']['accuracy'],
                     'tokens_per_target_call': arm['validation']['tokens_per_target_call']})
      self.log(f'tuning {label}: validation {scored[-1]["accuracy"]:.1%} at step {arm["step"]}')
    best = max(range(len(scored)), key=lambda i: (scored[i]['accuracy'], scored[i]['tokens_per_target_call'], -i))
    out = {'chosen': points[best], 'points': scored, 'pair_seed': pair_seed,
           'arbiter_seed': self.s.tuning.arbiter_seed}
    files.write_atomically(path, json.dumps(out, indent=1))
    return out

  def run(self) -> dict:
    s = self.s
    runs = [r for r in RUNS if any(ABLATIONS[a][0] == r for a in s.ablations)]
    total = len(s.pair_seeds) * len(s.arbiter_seeds) * len(runs)
    self.log(f'{len(s.pair_seeds)} pair seeds x {len(s.arbiter_seeds)} arbiter seeds x {len(runs)} training runs '
             f'({total} arbiters) in {self.workdir}')
    tuning, per_pair = None, {}
    for pair_seed in s.pair_seeds:
      self.train_pair(pair_seed)
      base = self.arbiter_config(pair_seed, 0, '', {})
      target, draft = arbiter.load_pair(base)
      task = arbiter.load_task(base, base.pair.target_workdir)
      data = self.splits(task)
      forks_path = self.forks(pair_seed, base, target, draft, task)
      if tuning is None:
        tuning = self.tune(target, draft, task, data, forks_path)
        self.log(f'REINFORCE settings chosen on validation: {tuning["chosen"]}')
      reference = self.reference(pair_seed, base, target, draft, task, data)
      baselines = self.baselines(pair_seed, base, target, draft, task, data, forks_path) if s.pareto_check else None
      evals, curves = {}, {}
      for arbiter_seed in s.arbiter_seeds:
        for run in runs:
          workdir = os.path.join(self.pair_dir(pair_seed), _dir_name(run), f'seed{arbiter_seed}')
          overrides = dict(RUNS[run], **{f'rl.{k}': v for k, v in tuning['chosen'].items()})
          config = self.arbiter_config(pair_seed, arbiter_seed, workdir, overrides)
          done = _finished(config, workdir)  # Checked before any training: a finished run is never changed.
          t0 = time.time()
          if not done:
            self.train_arbiter(config, forks_path)
          evals[(arbiter_seed, run)] = result = self.evaluate_run(config, run, target, draft, task, data)
          if s.pareto_check and 'supervised+reinforce' in result['arms']:
            curves[arbiter_seed] = self.curve(config, result, target, draft, task, data)
          self.done_runs += 1
          summary = ', '.join(f'{a} {v["test"]["0"]["accuracy"]:.1%}' for a, v in result['arms'].items())
          self.log(f'run {self.done_runs}/{total}: pair {pair_seed}, arbiter seed {arbiter_seed}, {run}: ' +
                   ('already done, skipped' if done else f'done in {time.time() - t0:.0f} s') + f' ({summary})')
      per_pair[pair_seed] = {'reference': reference, 'evals': evals, 'forks': evaluate.fork_counts(
          counterfactual.Forks.load(forks_path)), 'baselines': baselines, 'curves': curves}
    study = study_report.summarize(self.config, per_pair, tuning, time.time() - self.t_start)
    study_report.write(study, self.workdir)
    self.log(f'finished; {self.workdir}/study.json, study.md, study.png')
    return study


def _run_settings(config) -> dict:
  """What an arbiter's figures depend on besides its seeds: checked when a finished run is reused."""
  return {'rl': {k: config.rl[k] for k in ('steps', 'prompts_per_step', 'rollouts_per_prompt', 'learning_rate',
                                           'entropy_coef', 'normalize_advantages', 'speed_weight', 'save_every')},
          'warm_start': {k: config.warm_start[k] for k in ('problems', 'steps', 'speed_bonus', 'deviation_cost')},
          'projection': config.policy.projection, 'seed': config.seed}


def _finished(config, workdir: str) -> bool:
  """Whether the run in `workdir` is finished (its EVAL_FILE exists); one finished with other settings than
  `config`'s is an error naming both, before anything is trained or overwritten."""
  path = os.path.join(workdir, EVAL_FILE)
  if not os.path.exists(path):
    return False
  with open(path) as f:
    recorded = json.load(f)['settings']
  expected = json.loads(json.dumps(_run_settings(config)))
  if recorded != expected:
    raise ValueError(f'{path} was made with other settings ({recorded}) than this study\'s ({expected}); use a new '
                     f'--workdir, or move {workdir} aside to train it again.')
  return True


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The 'study' job (configs/study.py)."""
  return Study(config, workdir).run()
