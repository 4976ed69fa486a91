"""Hugging Face checkpoint directories <-> (ModelConfig, params).

A directory holds `config.json` and either `model.safetensors` or a sharded `model.safetensors.index.json`. Import
reads tensors with the `safetensors` package (no torch); export writes the same layout, so a model trained here runs
in Hugging Face transformers. Export is atomic: it writes into a temporary sibling directory and renames it into
place, so a failed export never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from typing import Any, Iterator, Mapping, Optional

import jax
import numpy as np
import safetensors
import safetensors.numpy
from flax import traverse_util

from cospec_jax.models import transformer
from cospec_jax.models.config import ModelConfig, RopeScaling

SUPPORTED_MODEL_TYPES = ('llama', 'qwen2', 'qwen3')
CONFIG_NAME = 'config.json'
WEIGHTS_NAME = 'model.safetensors'
INDEX_NAME = 'model.safetensors.index.json'
# Buffers some checkpoints carry that are recomputed here, not parameters.
_IGNORED = re.compile(r'.*rotary_emb\.inv_freq$')


class CheckpointError(ValueError):
  """A checkpoint directory is missing, incomplete, corrupt or of an unsupported kind."""


# ----------------------------------------------------------------------------------------------- configs


def config_from_hf(hf: Mapping[str, Any], dtype: str = 'float32', param_dtype: str = 'float32') -> ModelConfig:
  """Translates a Hugging Face `config.json` mapping into a ModelConfig; raises CheckpointError if unsupported."""
  model_type = hf.get('model_type')
  if model_type not in SUPPORTED_MODEL_TYPES:
    raise CheckpointError(
        f'model_type={model_type!r} is not supported; cospec_jax implements {SUPPORTED_MODEL_TYPES} '
        '(decoder-only Llama/Qwen2/Qwen3). Convert the checkpoint or add the architecture in cospec_jax/models.')
  unsupported = {
      'hidden_act': (hf.get('hidden_act', 'silu') != 'silu', "only 'silu' (SwiGLU) is implemented"),
      'mlp_bias': (bool(hf.get('mlp_bias', False)), 'MLP biases are not implemented'),
      'use_sliding_window': (bool(hf.get('use_sliding_window', False)), 'sliding-window attention is not implemented'),
      'attention_bias': (model_type != 'qwen2' and bool(hf.get('attention_bias', False)),
                         'o_proj biases (attention_bias=true) are not implemented'),
  }
  for key, (bad, why) in unsupported.items():
    if bad:
      raise CheckpointError(f'config.json has {key}={hf.get(key)!r}: {why}.')
  rope = dict(hf.get('rope_parameters') or {})
  if not rope:  # transformers < 5 writes rope_theta at top level and rope_scaling beside it.
    rope = dict(hf.get('rope_scaling') or {})
    rope.setdefault('rope_theta', hf.get('rope_theta', 10_000.0))
  rope_type = rope.pop('rope_type', rope.pop('type', 'default'))
  rope_theta = float(rope.pop('rope_theta', 10_000.0))
  known_scaling = ('factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings')
  try:
    scaling = RopeScaling(rope_type=rope_type, **{k: rope[k] for k in known_scaling if k in rope})
  except ValueError as e:
    raise CheckpointError(f'config.json: {e}') from e
  n_heads = int(hf['num_attention_heads'])
  return ModelConfig(
      vocab_size=int(hf['vocab_size']),
      d_model=int(hf['hidden_size']),
      n_layers=int(hf['num_hidden_layers']),
      n_heads=n_heads,
      n_kv_heads=int(hf.get('num_key_value_heads') or n_heads),
      head_dim=int(hf.get('head_dim') or hf['hidden_size'] // n_heads),
      ffw_dim=int(hf['intermediate_size']),
      rope_theta=rope_theta,
      rope_scaling=scaling,
      rms_eps=float(hf.get('rms_norm_eps', 1e-6)),
      tie_embeddings=bool(hf.get('tie_word_embeddings', False)),
      qkv_bias=model_type == 'qwen2' or bool(hf.get('attention_bias', False)),
      qk_norm=model_type == 'qwen3',
      max_position_embeddings=int(hf.get('max_position_embeddings', 2048)),
      initializer_range=float(hf.get('initializer_range', 0.02)),
      model_type=model_type,
      dtype=dtype,
      param_dtype=param_dtype,
  )


def config_to_hf(config: ModelConfig, **extra: Any) -> dict:
  """Returns a Hugging Face `config.json` mapping for `config` (`extra` adds e.g. eos_token_id)."""
  if config.model_type not in SUPPORTED_MODEL_TYPES:
    raise CheckpointError(f'model_type={config.model_type!r} cannot be exported; use one of {SUPPORTED_MODEL_TYPES}.')
  if config.qkv_bias and config.model_type != 'qwen2':
    raise CheckpointError(f"qkv_bias=True exports only as model_type='qwen2', not {config.model_type!r}.")
  if config.qk_norm != (config.model_type == 'qwen3'):
    raise CheckpointError(f"qk_norm={config.qk_norm} needs model_type='qwen3' (and only qwen3 has it).")
  rope = {'rope_type': config.rope_scaling.rope_type, 'rope_theta': config.rope_theta}
  if config.rope_scaling.rope_type == 'linear':
    rope['factor'] = config.rope_scaling.factor
  elif config.rope_scaling.rope_type == 'llama3':
    for k in ('factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings'):
      rope[k] = getattr(config.rope_scaling, k)
  hf = {
      'architectures': [{'llama': 'LlamaForCausalLM', 'qwen2': 'Qwen2ForCausalLM', 'qwen3': 'Qwen3ForCausalLM'}[
          config.model_type]],
      'model_type': config.model_type,
      'vocab_size': config.vocab_size,
      'hidden_size': config.d_model,
      'intermediate_size': config.ffw_dim,
      'num_hidden_layers': config.n_layers,
      'num_attention_heads': config.n_heads,
      'num_key_value_heads': config.n_kv_heads,
      'head_dim': config.head_dim,
      'hidden_act': 'silu',
      'max_position_embeddings': config.max_position_embeddings,
      'initializer_range': config.initializer_range,
      'rms_norm_eps': config.rms_eps,
      'tie_word_embeddings': config.tie_embeddings,
      'attention_bias': False,
      'mlp_bias': False,
      'rope_parameters': rope,
      # transformers < 5 reads these two instead of rope_parameters.
      'rope_theta': config.rope_theta,
      'rope_scaling': None if config.rope_scaling.rope_type == 'default' else {
          k: v for k, v in rope.items() if k != 'rope_theta'},
      'dtype': config.param_dtype,
      'use_cache': True,
  }
  hf.update(extra)
  return hf


# ----------------------------------------------------------------------------------------------- names


def _hf_to_path(name: str) -> tuple[str, ...]:
  """'model.layers.3.self_attn.q_proj.weight' -> ('layers_3', 'self_attn', 'q_proj', 'kernel')."""
  parts = name.split('.')
  if parts[0] == 'model':
    parts = parts[1:]
  if len(parts) > 1 and parts[0] == 'layers':
    parts = [f'layers_{parts[1]}'] + parts[2:]
  module, leaf = parts[:-1], parts[-1]
  if leaf == 'weight':
    if module[-1] == 'embed_tokens':
      leaf = 'embedding'
    elif module[-1].endswith('_proj') or module[-1] == 'lm_head':
      leaf = 'kernel'
  return tuple(module) + (leaf,)


def _path_to_hf(path: tuple[str, ...]) -> str:
  """Inverse of _hf_to_path."""
  module, leaf = list(path[:-1]), path[-1]
  if leaf in ('kernel', 'embedding'):
    leaf = 'weight'
  if module[0].startswith('layers_'):
    module = ['layers', module[0][len('layers_'):]] + module[1:]
  prefix = [] if module == ['lm_head'] else ['model']
  return '.'.join(prefix + module + [leaf])


def _is_kernel(path: tuple[str, ...]) -> bool:
  return path[-1] == 'kernel'  # torch Linear stores [out, in]; flax Dense [in, out].


# ----------------------------------------------------------------------------------------------- import


def _read_json(path: str) -> dict:
  if not os.path.isfile(path):
    raise CheckpointError(f'{path} does not exist; a Hugging Face checkpoint directory needs {os.path.basename(path)}.')
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise CheckpointError(f'{path} is not valid JSON ({e}); re-export or re-download the checkpoint.') from e


def _weight_files(directory: str) -> list[str]:
  single, index = os.path.join(directory, WEIGHTS_NAME), os.path.join(directory, INDEX_NAME)
  if os.path.isfile(index):
    weight_map = _read_json(index).get('weight_map')
    if not isinstance(weight_map, dict) or not weight_map:
      raise CheckpointError(f'{index} has no "weight_map"; re-export or re-download the checkpoint.')
    files = sorted(set(weight_map.values()))
    missing = [f for f in files if not os.path.isfile(os.path.join(directory, f))]
    if missing:
      raise CheckpointError(f'{index} names shard(s) {missing} that are not in {directory}; the download is '
                            'incomplete: fetch the missing files.')
    return [os.path.join(directory, f) for f in files]
  if os.path.isfile(single):
    return [single]
  raise CheckpointError(f'No weights in {directory}: expected {WEIGHTS_NAME} or {INDEX_NAME} (only safetensors '
                        'checkpoints are read; convert .bin/.pth files with transformers first).')


def _iter_tensors(files: list[str]) -> Iterator[tuple[str, np.ndarray]]:
  for path in files:
    try:
      with safetensors.safe_open(path, framework='np') as f:
        for name in f.keys():
          yield name, f.get_tensor(name)
    except (safetensors.SafetensorError, OSError, ValueError) as e:
      raise CheckpointError(f'{path} is corrupt or truncated ({e}); re-export or re-download it.') from e


def read_hf_config(directory: str, dtype: str = 'float32', param_dtype: Optional[str] = None) -> ModelConfig:
  """The ModelConfig of a Hugging Face checkpoint directory, from its config.json alone (no weights read)."""
  if not os.path.isdir(directory):
    raise CheckpointError(f'Checkpoint directory {directory!r} does not exist.')
  return config_from_hf(_read_json(os.path.join(directory, CONFIG_NAME)), dtype, param_dtype or dtype)


def load_hf_checkpoint(directory: str, dtype: str = 'float32',
                       param_dtype: Optional[str] = None) -> tuple[ModelConfig, dict]:
  """Reads a Hugging Face checkpoint directory.

  Args:
    directory: holds config.json and model.safetensors (or a sharded index).
    dtype: activation / KV-cache dtype of the returned config.
    param_dtype: parameter dtype; defaults to `dtype`.

  Returns:
    (config, params): params is a nested dict of numpy arrays shaped as `transformer.param_shapes(config)`.
  """
  config = read_hf_config(directory, dtype, param_dtype)
  expected = traverse_util.flatten_dict(transformer.param_shapes(config))
  out_dtype = config.jnp_param_dtype
  flat, unexpected = {}, []
  for name, array in _iter_tensors(_weight_files(directory)):
    if _IGNORED.match(name):
      continue
    path = _hf_to_path(name)
    if path == ('lm_head', 'kernel') and config.tie_embeddings:
      continue  # Tied: the head is the embedding; some exports carry a copy.
    if path not in expected:
      unexpected.append(name)
      continue
    array = array.T if _is_kernel(path) else array
    if array.shape != expected[path].shape:
      raise CheckpointError(f'{name} has shape {array.shape[::-1] if _is_kernel(path) else array.shape} but '
                            f'config.json implies {expected[path].shape[::-1] if _is_kernel(path) else expected[path].shape}.')
    flat[path] = np.asarray(array, dtype=out_dtype)
  if unexpected:
    raise CheckpointError(f'{directory} has tensors this architecture does not use: {unexpected[:8]}'
                          f'{"..." if len(unexpected) > 8 else ""}; is config.json the right one?')
  missing = sorted(set(expected) - set(flat))
  if missing:
    raise CheckpointError(f'{directory} lacks tensors {[_path_to_hf(p) for p in missing][:8]}; the checkpoint is '
                          'incomplete.')
  return config, traverse_util.unflatten_dict(flat)


# ----------------------------------------------------------------------------------------------- export


def save_hf_checkpoint(directory: str, config: ModelConfig, params: Any, overwrite: bool = False,
                       max_shard_bytes: int = 4 * 2**30, **config_extra: Any) -> str:
  """Writes `params` as a Hugging Face checkpoint directory, atomically.

  Args:
    directory: where the checkpoint appears (created; must not exist unless `overwrite`).
    config: the model's config.
    params: the 'params' tree of `transformer.Transformer(config)`.
    overwrite: replace an existing directory (only after the new one is complete).
    max_shard_bytes: above this, weights are split into shards with a `model.safetensors.index.json`.
    **config_extra: extra config.json entries, e.g. eos_token_id=..., bos_token_id=...

  Returns:
    The directory's path.
  """
  directory = os.path.abspath(directory)
  if os.path.exists(directory) and not overwrite:
    raise FileExistsError(f'{directory} exists; pass overwrite=True or choose another directory.')
  expected = traverse_util.flatten_dict(transformer.param_shapes(config))
  flat = traverse_util.flatten_dict(jax.device_get(params))
  if set(flat) != set(expected):
    raise ValueError(f'params do not match config: missing {sorted(set(expected) - set(flat))[:4]}, '
                     f'unexpected {sorted(set(flat) - set(expected))[:4]}.')
  tensors = {}
  for path, array in flat.items():
    array = np.asarray(array)
    tensors[_path_to_hf(path)] = np.ascontiguousarray(array.T if _is_kernel(path) else array)

  parent = os.path.dirname(directory)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(directory)}.tmp-', dir=parent)
  try:
    shards, size = [{}], 0
    for name in sorted(tensors):
      if shards[-1] and size + tensors[name].nbytes > max_shard_bytes:
        shards.append({})
        size = 0
      shards[-1][name] = tensors[name]
      size += tensors[name].nbytes
    if len(shards) == 1:
      safetensors.numpy.save_file(shards[0], os.path.join(tmp, WEIGHTS_NAME), metadata={'format': 'pt'})
    else:
      weight_map = {}
      for i, shard in enumerate(shards):
        fname = f'model-{i + 1:05d}-of-{len(shards):05d}.safetensors'
        safetensors.numpy.save_file(shard, os.path.join(tmp, fname), metadata={'format': 'pt'})
        weight_map.update({name: fname for name in shard})
      with open(os.path.join(tmp, INDEX_NAME), 'w') as f:
        json.dump({'metadata': {'total_size': sum(t.nbytes for t in tensors.values())}, 'weight_map': weight_map},
                  f, indent=2)
    with open(os.path.join(tmp, CONFIG_NAME), 'w') as f:
      json.dump(config_to_hf(config, **config_extra), f, indent=2)
    if os.path.exists(directory):
      old = tempfile.mkdtemp(prefix=f'.{os.path.basename(directory)}.old-', dir=parent)
      os.rename(directory, os.path.join(old, 'ckpt'))
      os.rename(tmp, directory)
      shutil.rmtree(old)
    else:
      os.rename(tmp, directory)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return directory
