"""Supervised training of an LM on question -> solution pairs: optax AdamW, orbax checkpoints, exact resume.

`train(config, workdir)` builds the data set, restores the latest checkpoint in `workdir/checkpoints` if any, trains
to `config.train.steps`, exports the model as a Hugging Face checkpoint (`workdir/hf`), and measures greedy validation
accuracy (`workdir/eval.json`). Metrics go to `workdir/metrics.jsonl` and TensorBoard (`workdir/tensorboard`).
"""

from __future__ import annotations

import json
import os
import time
import zlib
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from cospec_jax import files
from cospec_jax.models import ModelConfig, config as config_lib, init_params, save_hf_checkpoint, transformer
from cospec_jax.tasks import answers, arithmetic
from cospec_jax.tasks.tokenizer import CharTokenizer, Tokenizer
from cospec_jax.train import data as data_lib
from cospec_jax.train.checkpoint import Checkpointer, abstract, restore_once


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: optimizer steps taken.
  params: Any
  opt_state: Any
  rng: jax.Array  # uint32 key data (a plain array, so it checkpoints as one).


def make_schedule(cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warmup from 0 to the peak, then cosine decay to `final_lr_fraction` of it at `steps`."""
  if not 0 <= cfg.warmup_steps < cfg.steps:
    raise ValueError(f'train.warmup_steps={cfg.warmup_steps} must be in [0, train.steps={cfg.steps}); lower '
                     '--config.train.warmup_steps or raise --config.train.steps.')
  return optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, cfg.warmup_steps, cfg.steps,
                                            cfg.learning_rate * cfg.final_lr_fraction)


def make_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """AdamW under a linear-warmup cosine schedule, after global-norm clipping; no decay on norms and biases."""
  schedule = make_schedule(cfg)
  decay_mask = lambda params: jax.tree_util.tree_map_with_path(  # noqa: E731
      lambda path, _: path[-1].key in ('kernel', 'embedding'), params)
  return optax.chain(
      optax.clip_by_global_norm(cfg.grad_clip),
      optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, mask=decay_mask))


def loss_fn(params, model: ModelConfig, batch: dict) -> tuple[jax.Array, jax.Array]:
  """Mean next-token cross-entropy over the solution tokens; returns (loss, token accuracy)."""
  B, L = batch['inputs'].shape
  positions_BxL = jnp.broadcast_to(jnp.arange(L, dtype=jnp.int32), (B, L))
  logits_BxLxV, _, _ = transformer.apply(model, params, batch['inputs'], positions_BxL)
  ce_BxL = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, batch['targets'])
  mask_BxL = batch['mask']
  denom = jnp.maximum(mask_BxL.sum(), 1.0)
  correct_BxL = (jnp.argmax(logits_BxLxV, -1) == batch['targets']).astype(jnp.float32)
  return (ce_BxL * mask_BxL).sum() / denom, (correct_BxL * mask_BxL).sum() / denom


def make_train_step(model: ModelConfig, optimizer: optax.GradientTransformation,
                    schedule: Callable[[jax.Array], jax.Array]):
  """Returns a jitted (state, batch) -> (state, metrics) that donates the old state."""

  def step(state: TrainState, batch: dict):
    (loss, token_acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, model, batch)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {'loss': loss, 'token_accuracy': token_acc, 'grad_norm': optax.global_norm(grads),
               'learning_rate': schedule(state.step)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return jax.jit(step, donate_argnums=0)


def task_from_config(cfg: ml_collections.ConfigDict):
  """(ArithmeticConfig, Tokenizer) for config.data."""
  from cospec_jax.tasks import arithmetic_tfds  # TFDS is imported only by code that builds data.
  difficulty = arithmetic.Difficulty(**cfg.difficulty.to_dict())
  wording = arithmetic.Wording(**cfg.wording.to_dict()) if 'wording' in cfg else arithmetic.Wording()
  transfer = cfg.transfer.to_dict() if 'transfer' in cfg else {'family': '', 'train_share': 0.0, 'eval_size': 0}
  if transfer['family'] not in ('',) + arithmetic.FAMILIES[1:]:
    raise ValueError(f'config.data.transfer.family={transfer["family"]!r}; choose one of '
                     f'{("",) + arithmetic.FAMILIES[1:]} ("" for arithmetic alone).')
  fields = (cfg.seed, cfg.train_size, cfg.validation_size, cfg.test_size, difficulty)
  if wording != arithmetic.Wording() or transfer['family']:  # The terse task keeps its name (and its data on disk).
    fields += (wording, tuple(sorted(transfer.items())))
  # The name carries a digest of every field, so a changed field never reuses data built for another.
  builder_config = arithmetic_tfds.ArithmeticConfig(
      name=f'{cfg.name}_{zlib.crc32(repr(fields).encode()):08x}', seed=cfg.seed, train_size=cfg.train_size,
      validation_size=cfg.validation_size, test_size=cfg.test_size, difficulty=difficulty, wording=wording,
      transfer_family=transfer['family'], transfer_train_share=transfer['train_share'],
      transfer_eval_size=transfer['eval_size'])
  return builder_config, CharTokenizer()


def load_task(cfg: ml_collections.ConfigDict, workdir: str):
  """Returns (tokenizer, {split: list of problems}) for config.data, building the TFDS data set if needed."""
  from cospec_jax.tasks import arithmetic_tfds
  builder_config, tokenizer = task_from_config(cfg)
  return tokenizer, arithmetic_tfds.load_splits(_data_dir(cfg, workdir), builder_config)


def build_task(cfg: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes config.data's TFDS data set (what `load_task` reads) if it is not on disk yet, reading none of it."""
  from cospec_jax.tasks import arithmetic_tfds
  arithmetic_tfds.build(_data_dir(cfg, workdir), task_from_config(cfg)[0])


def _data_dir(cfg: ml_collections.ConfigDict, workdir: str) -> str:
  return cfg.data_dir or os.path.join(workdir, 'tfds')  # '' keeps the data set in <workdir>/tfds.


class MetricsWriter:
  """Appends JSON lines and TensorBoard scalars. On resume it drops lines past the restored step. In a multi-process
  run only process 0 writes, so metrics are logged once."""

  def __init__(self, workdir: str, resume_step: int):
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._file = self._tb = None
    if jax.process_index() != 0:
      return
    if os.path.exists(self.path):
      with open(self.path) as f:
        kept = [line for line in f if line.strip() and json.loads(line).get('step', 0) <= resume_step]
      files.write_atomically(self.path, ''.join(kept))
    self._file = open(self.path, 'a')
    try:
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'), purge_step=resume_step + 1)
    except ImportError:  # TensorBoard output is a convenience; the JSON lines are the record.
      self._tb = None

  def write(self, step: int, metrics: dict):
    if self._file is None:
      return
    record = {'step': int(step), **{k: float(v) for k, v in metrics.items()}}
    self._file.write(json.dumps(record) + '\n')
    self._file.flush()
    if self._tb is not None:
      for k, v in record.items():
        if k != 'step':
          self._tb.add_scalar(k, v, step)

  def close(self):
    if self._file is not None:
      self._file.close()
    if self._tb is not None:
      self._tb.close()


def init_state(model: ModelConfig, optimizer: optax.GradientTransformation, seed: int) -> TrainState:
  params = init_params(model, jax.random.PRNGKey(seed))
  return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params),
                    jax.random.key_data(jax.random.PRNGKey(seed + 1)))


def greedy_accuracy(model: ModelConfig, params, tokenizer: Tokenizer, problems: list[dict], batch_size: int,
                    max_new_tokens: int) -> dict:
  """Greedy-decodes every problem and checks its final answer; returns accuracy, counts and per-problem results."""
  from cospec_jax.decoding import AutoregressiveDecoder, DecodeSettings
  decoder = AutoregressiveDecoder(model, settings=DecodeSettings.for_tokenizer(tokenizer, max_new_tokens))
  prompts = [data_lib.prompt_ids(tokenizer, p['question']) for p in problems]
  completions = decoder.generate_in_batches(params, prompts, batch_size)
  correct = answers.score_completions(tokenizer, completions, problems)
  n = len(correct)
  return {'accuracy': float(np.mean(correct)) if n else 0.0, 'correct': int(np.sum(correct)), 'total': n,
          'per_problem': [bool(c) for c in correct]}


def train(config: ml_collections.ConfigDict, workdir: str, config_flag: str = '--config') -> dict:
  """Trains (or resumes) the model of `config`; returns the final metrics and the validation accuracy.

  `config_flag` is how the user's command line reaches `config` ('--config' for configs/train_target.py,
  '--config.target' inside the pipeline): a corrupt checkpoint's error names <config_flag>.train.restore_step.
  config.train.restore_step >= 0 resumes from that step and moves the newer ones aside (checkpoint.py)."""
  os.makedirs(workdir, exist_ok=True)
  cfg = config.train
  model = config_lib.from_dict(config.model.to_dict())
  tokenizer, splits = load_task(config.data, workdir)
  if model.vocab_size != tokenizer.vocab_size:
    raise ValueError(f'config.model.vocab_size={model.vocab_size} but the tokenizer has {tokenizer.vocab_size} '
                     'tokens; set them equal.')
  train_set = splits['train']
  examples = data_lib.encode_examples(tokenizer, [p['question'] for p in train_set],
                                      [p['solution'] for p in train_set], cfg.max_len)

  optimizer = make_optimizer(cfg)
  schedule = make_schedule(cfg)
  state = init_state(model, optimizer, config.seed)
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'), cfg.save_every, cfg.keep,
                              restore_flag=f'{config_flag}.train.restore_step')
  if checkpointer.latest_step() is not None or cfg.restore_step >= 0:  # A step asked for must exist.
    restore_step = None if cfg.restore_step < 0 else cfg.restore_step
    _, state = checkpointer.restore(abstract(state), restore_step, resume=True)
  start = int(state.step)
  metrics_writer = MetricsWriter(workdir, start)
  train_step = make_train_step(model, optimizer, schedule)

  last = {}
  t0 = time.time()
  with tqdm.trange(start, cfg.steps, initial=start, total=cfg.steps, desc=f'train {config.name}',
                   disable=not cfg.progress_bar, mininterval=2.0) as bar:
    pending = None
    for step in bar:
      batch = data_lib.batch_at(examples, step, cfg.batch_size, config.seed, cfg.width_multiple)
      state, metrics = train_step(state, batch)
      # Pull the previous step's metrics after dispatching this one: the host never stalls the device.
      if pending is not None and (pending[0] % cfg.log_every == 0 or pending[0] == cfg.steps):
        last = jax.device_get(pending[1])
        metrics_writer.write(pending[0], last)
        bar.set_postfix(loss=f'{last["loss"]:.3f}')
      pending = (step + 1, metrics)
      checkpointer.save(step + 1, state)
    if pending is not None:
      last = jax.device_get(pending[1])
      metrics_writer.write(pending[0], last)
  checkpointer.save(int(state.step), state, force=True)
  checkpointer.wait()
  checkpointer.close()
  metrics_writer.close()
  train_seconds = time.time() - t0

  hf_dir = save_hf_checkpoint(os.path.join(workdir, 'hf'), model, state.params, overwrite=True,
                              bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id,
                              pad_token_id=tokenizer.pad_id)
  # Validation, not test: the test split is read once, by the comparison table (cospec_jax/evaluate.py).
  by_family = {}
  for p in splits['validation']:
    by_family.setdefault(p.get('family', 'arithmetic'), []).append(p)
  evaluation = greedy_accuracy(model, state.params, tokenizer, by_family['arithmetic'][:config.eval.num_examples],
                               config.eval.batch_size, config.eval.max_new_tokens)
  result = {'name': config.name, 'step': int(state.step), 'params': model.num_params(), 'train_seconds': train_seconds,
            'final_metrics': {k: float(v) for k, v in last.items()}, 'validation_accuracy': evaluation['accuracy'],
            'validation_correct': evaluation['correct'], 'validation_total': evaluation['total'],
            'hf_checkpoint': hf_dir}
  for family, problems in by_family.items():  # The transfer family, trained in the mixture.
    if family != 'arithmetic':
      result[f'{family}_validation_accuracy'] = greedy_accuracy(
          model, state.params, tokenizer, problems[:config.eval.num_examples], config.eval.batch_size,
          config.eval.max_new_tokens)['accuracy']
  _write_json(os.path.join(workdir, 'eval.json'), dict(result, per_problem=evaluation['per_problem']))
  print(f'{config.name}: {model.num_params():,} params, step {result["step"]}, '
        f'validation accuracy {evaluation["correct"]}/{evaluation["total"]} = {evaluation["accuracy"]:.1%}' + ''.join(
            f', {k} {v:.1%}' for k, v in result.items() if k.endswith('_validation_accuracy') and k != 'validation_accuracy'))
  return result


def _write_json(path: str, obj: Any) -> None:
  files.write_atomically(path, json.dumps(obj, indent=2))


def restore_params(workdir: str, config: ml_collections.ConfigDict, step: Optional[int] = None):
  """Params of a trained model from its checkpoints (the latest step by default)."""
  model = config_lib.from_dict(config.model.to_dict())
  optimizer = make_optimizer(config.train)
  abstract_state = jax.eval_shape(lambda: init_state(model, optimizer, config.seed))
  return model, restore_once(os.path.join(workdir, 'checkpoints'), abstract_state, step).params
