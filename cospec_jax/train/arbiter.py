"""Training the CoSpec arbiter on a frozen draft/target pair: a supervised warm start, then REINFORCE.

Warm start (`config.warm_start`, skipped when problems=0): counterfactual forks on training problems
(`counterfactual.collect`, kept in the workdir as FORKS_FILE and reused) label each mismatch by what keeping the
draft's token does to the final answer; `counterfactual.fit_policy` fits the policy to them. A sparse, mostly
negative reward alone teaches a fresh policy only "never keep the draft" (measured; see the README), so REINFORCE
starts from there. The warm-started state is checkpointed as step 0.

Each REINFORCE step draws P training prompts (a pure function of (seed, step)), gives each a `lam` from
`config.rl.lams`, and decodes K rollouts of each with the stochastic policy in one compiled call. Reward =
final-answer correctness (the task's own scorer: answer match, or tests passed in the sandbox) + lam * (tokens per
target call) / (gamma + 1) * config.rl.speed_weight. A leave-one-out baseline within each prompt's K rollouts gives
the advantages (divided by their standard deviation over the batch when config.rl.normalize_advantages; the share of
groups whose rollouts differ at all is logged as groups_with_signal: the others carry no gradient); the update is
`reinforce.make_update`, with an entropy bonus of weight config.rl.entropy_coef. Policy, optimizer state, step and
RNG are checkpointed with orbax, so a killed run resumes exactly.

Scale (`config.mesh`, `config.distributed`): rollouts (and the warm start's forks) are split over the mesh's `data`
axis and the pair's weights over `model` by `config.mesh.rules`; the update is the same loss over the global batch.
In a multi-process run every process derives the same prompts (a pure function of seed and step) and places only its
own rows on its devices; process 0 writes the forks and the metrics, and orbax writes each checkpoint once.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from cospec_jax import files, sharding
from cospec_jax.decoding import CoSpec, DecodeSettings, Exact, SpeculativeDecoder
from cospec_jax.decoding import prompts as prompts_lib
from cospec_jax.decoding.cospec import ArbiterPolicy, init_policy
from cospec_jax.models import fingerprint, load_hf_checkpoint, read_hf_config
from cospec_jax.tasks import task as task_lib
from cospec_jax.train import counterfactual, reinforce, trainer
from cospec_jax.train.checkpoint import Checkpointer, abstract, restore_once


FORKS_FILE = 'counterfactual_forks.npz'
DONE_FILE = 'done.json'  # Written last by train_arbiter: the steps that restore, so later stages read only those.


@flax.struct.dataclass
class ArbiterState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array  # uint32 key data.


def checkpoint_dirs(config: ml_collections.ConfigDict) -> tuple[str, str]:
  """The target's and the draft's Hugging Face checkpoint directories: config.pair.{target,draft}_checkpoint when
  set (a real pair), else the trainers' exports <workdir>/hf."""
  pair = config.pair
  return tuple(pair.get(f'{name}_checkpoint') or os.path.join(pair[f'{name}_workdir'], 'hf')
               for name in ('target', 'draft'))


def load_pair(config: ml_collections.ConfigDict, mesh=None):
  """(target, draft) as (ModelConfig, params), in config.pair.dtype (float32 when unset), layers scanned when
  config.pair.scan_layers; one model after the other. With a mesh, each tensor is read by slice straight into its
  shards, placed by config.mesh.rules (head-aware), so the host never holds a whole model."""
  dtype = config.pair.get('dtype', 'float32')
  return tuple(load_hf_checkpoint(d, dtype, scan_layers=config.pair.get('scan_layers', False), mesh=mesh,
                                  rules=None if mesh is None else config.mesh.rules)
               for d in checkpoint_dirs(config))


def load_task(config: ml_collections.ConfigDict, workdir: str):
  """config.data's task (tasks/task.py), reading a real task's tokenizer from the target checkpoint."""
  return task_lib.from_config(config.data, workdir, checkpoint_dirs(config)[0])


def decoder_for(target, draft, config: ml_collections.ConfigDict, tokenizer, sample_actions: bool,
                max_decisions: int = 0, mesh=None) -> SpeculativeDecoder:
  policy = ArbiterPolicy(config.policy.hidden, config.policy.projection)
  return SpeculativeDecoder(
      target[0], draft[0], CoSpec(Exact(), policy, sample_actions), config.rl.gamma,
      DecodeSettings.for_tokenizer(tokenizer, config.rl.max_new_tokens),
      max_decisions=max_decisions, mesh=mesh)


def rewards(generation, problems, task, lam_B: np.ndarray, gamma: int, speed_weight: float = 1.0
            ) -> tuple[np.ndarray, np.ndarray]:
  """(reward_B, correct_B) on the host: correct + lam * speed_weight * (tokens per target call) / (gamma + 1)."""
  correct_B = task.score(generation.completions(), problems).astype(np.float32)
  st = sharding.fetch(generation.stats)
  tau_B = st.generated_B / np.maximum(st.target_calls_B, 1)
  return correct_B + lam_B * speed_weight * tau_B / (gamma + 1), correct_B


def make_optimizer(rl: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return optax.chain(optax.clip_by_global_norm(rl.grad_clip), optax.adam(rl.learning_rate))


def initial_state(config: ml_collections.ConfigDict, target, draft) -> ArbiterState:
  policy = ArbiterPolicy(config.policy.hidden, config.policy.projection)
  params = init_policy(policy, target[0].d_model, draft[0].d_model, jax.random.PRNGKey(config.seed))
  return ArbiterState(jnp.zeros((), jnp.int32), params, make_optimizer(config.rl).init(params),
                      jax.random.key_data(jax.random.PRNGKey(config.seed + 1)))


def warm_start(config: ml_collections.ConfigDict, workdir: str, state: ArbiterState, target, draft, task,
               train_problems, mesh=None) -> ArbiterState:
  """`state` with the policy fitted to counterfactual forks of the first warm_start.problems training problems."""
  ws, path = config.warm_start, os.path.join(workdir, FORKS_FILE)
  if os.path.exists(path):
    forks = counterfactual.Forks.load(path)
    if len(forks.target_right_P) != ws.problems:
      raise ValueError(f'{path} holds forks of {len(forks.target_right_P)} problems, but '
                       f'config.warm_start.problems={ws.problems}. Delete the file to fork again, or set the count.')
  else:
    t0 = time.time()
    forks = counterfactual.collect(target, draft, task, train_problems[:ws.problems], config.rl.gamma,
                                   config.rl.max_new_tokens, ws.batch_size, progress=config.rl.progress_bar,
                                   mesh=mesh)
    if jax.process_index() == 0:
      forks.save(path)
    print(f'arbiter warm start: {len(forks.problem_N)} forks from {ws.problems} problems, '
          f'{int(np.sum(forks.fork_right_N & ~forks.target_right_N))} fix a wrong answer, '
          f'{int(np.sum(forks.target_right_N & ~forks.fork_right_N))} break a right one ({time.time() - t0:.0f} s)')
  policy = ArbiterPolicy(config.policy.hidden, config.policy.projection)
  params, loss = counterfactual.fit_policy(policy, state.params, forks, config.rl.lams, ws.speed_bonus, ws.steps,
                                           ws.learning_rate, deviation_cost=ws.deviation_cost)
  print(f'arbiter warm start: fitted, loss {loss:.4f}' if ws.steps else
        'arbiter warm start: input statistics only (warm_start.steps=0; no label read)')
  return state.replace(params=params, opt_state=make_optimizer(config.rl).init(params))


def restore_state(config: ml_collections.ConfigDict, workdir: str, step=None) -> ArbiterState:
  """The checkpointed arbiter state of `workdir` (the latest step by default). Reads only the pair's config.json
  files (the policy's input widths), not their weights."""
  target, draft = ((read_hf_config(d), None) for d in checkpoint_dirs(config))
  abstract_state = jax.eval_shape(lambda: initial_state(config, target, draft))
  return restore_once(os.path.join(workdir, 'checkpoints'), abstract_state, step)


def train_arbiter(config: ml_collections.ConfigDict, workdir: str, config_flag: str = '--config', pair=None) -> dict:
  """Runs REINFORCE to config.rl.steps (resuming from workdir/checkpoints); returns the last metrics.
  `config_flag`: how the user's command line reaches `config` ('--config.arbiter' in the pipeline), so a corrupt
  checkpoint's error names the flag that works (<config_flag>.rl.restore_step); restoring an older step moves the
  newer ones aside (checkpoint.py). `pair`: (target, draft) as `load_pair` returns them, when the caller has them
  loaded already (the pipeline loads them once for all its stages)."""
  os.makedirs(workdir, exist_ok=True)
  rl = config.rl
  mesh = sharding.mesh_from_config(config)
  target, draft = pair or load_pair(config, mesh)
  task = load_task(config, workdir)
  train_problems = task.problems('train')
  optimizer = make_optimizer(rl)
  state = initial_state(config, target, draft)
  if mesh is not None:
    state = sharding.on_mesh(state, mesh)
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'), rl.save_every, rl.keep,
                              restore_flag=f'{config_flag}.rl.restore_step')
  if checkpointer.latest_step() is not None:
    _, state = checkpointer.restore(abstract(state), None if rl.restore_step < 0 else rl.restore_step, resume=True)
  elif config.warm_start.problems > 0:
    state = warm_start(config, workdir, state, target, draft, task, train_problems, mesh)
    if mesh is not None:
      state = sharding.on_mesh(state, mesh)
    checkpointer.save(0, state, force=True)
  decoder = decoder_for(target, draft, config, task.tokenizer, sample_actions=True, max_decisions=rl.max_decisions,
                        mesh=mesh)
  update = reinforce.make_update(decoder.rule.policy, optimizer, rl.entropy_coef, mesh)
  start = int(state.step)
  writer = trainer.MetricsWriter(workdir, start)
  P, K = rl.prompts_per_step, rl.rollouts_per_prompt
  lams = np.asarray(rl.lams, np.float32)
  last = {}
  t0 = time.time()
  for step in tqdm.trange(start, rl.steps, initial=start, total=rl.steps, desc='arbiter',
                          disable=not rl.progress_bar or jax.process_index() != 0, mininterval=2.0):
    picker = np.random.default_rng([config.seed, step])
    chosen = [train_problems[i] for i in picker.integers(0, len(train_problems), P)]
    lam_B = np.repeat(lams[picker.integers(0, len(lams), P)], K)
    problems = [p for p in chosen for _ in range(K)]
    prompts = [task.prompt(p) for p in problems]
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), step)
    generation = decoder.generate(target[1], draft[1], prompts, rng,
                                  rule_params={'policy': state.params, 'lam': jnp.asarray(lam_B)})
    reward_B, correct_B = rewards(generation, problems, task, lam_B, rl.gamma, rl.speed_weight)
    advantages_B = reinforce.leave_one_out_advantages(jnp.asarray(reward_B).reshape(P, K),
                                                      rl.normalize_advantages).reshape(-1)
    advantages_B = prompts_lib.place(mesh, np.asarray(advantages_B))[0]
    params, opt_state, metrics = update(state.params, state.opt_state, generation.records, advantages_B)
    state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    st = sharding.fetch(generation.stats)
    last = {k: float(v) for k, v in sharding.fetch(metrics).items()}
    last.update(reward=float(reward_B.mean()), accuracy=float(correct_B.mean()),
                tokens_per_target_call=float(st.generated_B.sum() / max(st.target_calls_B.sum(), 1)),
                draft_kept_at_mismatch=float(st.kept_at_mismatch_B.sum() / max(st.mismatches_B.sum(), 1)),
                groups_with_signal=float(np.mean(np.ptp(reward_B.reshape(P, K), axis=1) > 1e-6)),
                records_dropped=float(np.maximum(sharding.fetch(generation.n_records_B) - rl.max_decisions, 0).sum()))
    writer.write(step + 1, last)
    checkpointer.save(step + 1, state)
  checkpointer.save(int(state.step), state, force=True)
  checkpointer.wait()
  steps = checkpointer.steps()
  checkpointer.close()
  writer.close()
  if jax.process_index() == 0:
    print(f'arbiter: step {int(state.step)}, {time.time() - t0:.0f} s, last {last}')
  _write_done(config, workdir, steps)  # Every process restores (orbax may synchronise them); process 0 writes.
  return last


def _write_done(config: ml_collections.ConfigDict, workdir: str, steps: list[int]) -> None:
  """Checks that every kept step restores, then writes DONE_FILE (atomically, last of the stage's outputs)."""
  good = []
  for step in steps:
    try:
      restore_state(config, workdir, step)
      good.append(step)
    except Exception as e:  # A damaged step is reported and left out; the others stay usable.
      print(f'arbiter: checkpoint step {step} does not restore ({type(e).__name__}); it is left out of {DONE_FILE}')
  if config.rl.steps not in good:
    raise RuntimeError(f'The final arbiter checkpoint (step {config.rl.steps}) in {workdir}/checkpoints does not '
                       'restore; rerun the command to train it again from the last good step.')
  if jax.process_index() == 0:
    files.write_atomically(os.path.join(workdir, DONE_FILE), json.dumps(
        {'steps': good, 'last': config.rl.steps, 'pair': pair_fingerprints(config),
         'policy': {'hidden': config.policy.hidden, 'projection': config.policy.projection}}))


def pair_fingerprints(config: ml_collections.ConfigDict) -> dict:
  """{'target': digest, 'draft': digest} of the pair's checkpoints (models.fingerprint): recorded with a finished
  arbiter, so a later user of it can check that it is given the pair it was trained for."""
  return dict(zip(('target', 'draft'), (fingerprint(d) for d in checkpoint_dirs(config))))


def finished_steps(config: ml_collections.ConfigDict, workdir: str) -> list[int]:
  """The checkpoint steps the finished arbiter stage recorded as restoring (DONE_FILE); raises a clear error when
  the stage has not finished."""
  path = os.path.join(workdir, DONE_FILE)
  try:
    with open(path) as f:
      done = json.load(f)
  except (OSError, ValueError) as e:
    raise FileNotFoundError(f'{path} is missing or unreadable ({type(e).__name__}): the arbiter stage has not '
                            f'finished; run it (job train_arbiter, or the pipeline) with the same config first.') from e
  if done.get('last') != config.rl.steps:
    raise ValueError(f'{path} records an arbiter trained to step {done.get("last")}, but config.rl.steps='
                     f'{config.rl.steps}; rerun the arbiter stage or set the steps it was trained with.')
  return list(done['steps'])
