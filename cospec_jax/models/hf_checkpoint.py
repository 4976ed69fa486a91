"""Hugging Face checkpoint directories <-> (ModelConfig, params).

A directory holds `config.json` and either `model.safetensors` or a sharded `model.safetensors.index.json`. Import
reads the safetensors format itself (no torch, no mmap), one tensor or one device's slice of one at a time, straight
into its shards on a mesh when given one; export writes the same layout with the `safetensors` package, so a model trained here runs
in Hugging Face transformers. Export is atomic: it writes into a temporary sibling directory and renames it into
place, so a failed export never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import mmap
import os
import re
import shutil
import tempfile
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy
from flax import traverse_util
from jax.sharding import NamedSharding

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


# safetensors dtype names -> numpy dtypes (bfloat16 through ml_dtypes, as jax registers it).
_ST_DTYPES = {'F64': np.float64, 'F32': np.float32, 'F16': np.float16, 'BF16': jnp.bfloat16, 'I64': np.int64,
              'I32': np.int32, 'I16': np.int16, 'I8': np.int8, 'U8': np.uint8, 'BOOL': np.bool_}
_READ_BYTES = 64 * 2**20  # Largest piece read at once: bounds the transient host memory of a slice.


def _scratch(shape: tuple[int, ...], dtype) -> np.ndarray:
  """An uninitialised array in its own anonymous mapping, returned to the OS as soon as it is dropped (a large
  malloc'd buffer freed by another thread, as JAX's transfers do, can stay in the heap and inflate the RSS)."""
  n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
  if n < 2**20:
    return np.empty(shape, dtype)
  return np.frombuffer(mmap.mmap(-1, n), dtype, int(np.prod(shape, dtype=np.int64))).reshape(shape)


@dataclasses.dataclass(frozen=True)
class _Stored:
  """Where one tensor lies in a safetensors file. It is read with plain positioned reads, not mmap, so the file's
  pages never count against the process's memory."""

  file: str
  dtype: np.dtype
  shape: tuple[int, ...]
  offset: int  # Absolute byte offset of the row-major data.

  def read(self, index: tuple[slice, ...]) -> np.ndarray:
    """The slice `index` (one slice per leading dimension, steps of 1) as a new array in the stored dtype. Reads
    whole rows of the leading dimension, at most _READ_BYTES at a time, and keeps only the sliced columns."""
    if not self.shape:
      return self._rows(0, 1).reshape(())
    index = tuple(index) + (slice(None),) * (len(self.shape) - len(index))
    (r0, r1, _), rest = index[0].indices(self.shape[0]), index[1:]
    row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
    out = _scratch((r1 - r0,) + tuple(len(range(*sl.indices(d))) for sl, d in zip(rest, self.shape[1:])), self.dtype)
    step = max(1, _READ_BYTES // max(row_bytes, 1))
    for a in range(r0, r1, step):
      b = min(a + step, r1)
      out[a - r0:b - r0] = self._rows(a, b)[(slice(None),) + rest]
    return out

  def _rows(self, a: int, b: int) -> np.ndarray:
    row_shape = self.shape[1:]
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * self.dtype.itemsize
    rows = _scratch((b - a,) + row_shape, self.dtype)
    with open(self.file, 'rb', buffering=0) as f:
      f.seek(self.offset + a * row_bytes)
      if f.readinto(memoryview(rows.reshape(-1).view(np.uint8))) != rows.nbytes:
        raise CheckpointError(f'{self.file} is corrupt or truncated (a tensor ends past the file); re-export or '
                              're-download it.')
    return rows


def _index_file(path: str) -> dict[str, _Stored]:
  """The tensors of one safetensors file, from its header alone."""
  try:
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
      n = int.from_bytes(f.read(8), 'little')
      if n <= 0 or 8 + n > size:
        raise ValueError(f'a header of {n} bytes in a file of {size}')
      header = json.loads(f.read(n))
    out = {}
    for name, meta in header.items():
      if name == '__metadata__':
        continue
      begin, end = meta['data_offsets']
      dtype = np.dtype(_ST_DTYPES[meta['dtype']])
      shape = tuple(int(d) for d in meta['shape'])
      if end - begin != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize or 8 + n + end > size:
        raise ValueError(f'tensor {name} ends past the end of the file or has the wrong size')
      out[name] = _Stored(path, dtype, shape, 8 + n + begin)
    return out
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise CheckpointError(f'{path} is corrupt or truncated ({e}); re-export or re-download it.') from e


def fingerprint(directory: str, probe_bytes: int = 1 << 20) -> str:
  """A short digest that tells checkpoints apart without reading them whole: config.json's bytes, and each weight
  file's size and its first and last `probe_bytes` (two trainings of one architecture differ there)."""
  digest = hashlib.sha256(_read_bytes(os.path.join(directory, 'config.json')))
  for path in _weight_files(directory):
    size = os.path.getsize(path)
    digest.update(str(size).encode())
    with open(path, 'rb') as f:
      digest.update(f.read(probe_bytes))
      f.seek(max(size - probe_bytes, 0))
      digest.update(f.read(probe_bytes))
  return digest.hexdigest()[:16]


def _read_bytes(path: str) -> bytes:
  try:
    with open(path, 'rb') as f:
      return f.read()
  except OSError as e:
    raise CheckpointError(f'{path} cannot be read ({e.strerror}); point at a Hugging Face checkpoint directory.') from e


def read_hf_config(directory: str, dtype: Optional[str] = 'float32', param_dtype: Optional[str] = None,
                   scan_layers: bool = False) -> ModelConfig:
  """The ModelConfig of a Hugging Face checkpoint directory, from its config.json alone (no weights read).

  `dtype` None: the checkpoint's own dtype (config.json's dtype or torch_dtype; bfloat16 for the Qwen2.5 releases),
  float32 when it names neither float32 nor bfloat16.
  """
  if not os.path.isdir(directory):
    raise CheckpointError(f'Checkpoint directory {directory!r} does not exist.')
  hf = _read_json(os.path.join(directory, CONFIG_NAME))
  if dtype is None:
    stored = hf.get('dtype') or hf.get('torch_dtype')
    dtype = stored if stored in ('float32', 'bfloat16') else 'float32'
  return config_from_hf(hf, dtype, param_dtype or dtype).replace(scan_layers=scan_layers)


def _layout(config: ModelConfig) -> dict[tuple[str, ...], tuple[jax.ShapeDtypeStruct, list[str]]]:
  """Each parameter path of `config` -> (its shape, the checkpoint tensors it is made of: one, or one per layer for
  a scanned stack)."""
  out = {}
  for path, shape in traverse_util.flatten_dict(transformer.param_shapes(config)).items():
    if path[0] == 'layers':  # Scanned: leaf [Y, ...] from model.layers.{0..Y-1}.<rest>.
      names = [_path_to_hf((f'layers_{i}',) + path[1:]) for i in range(config.n_layers)]
    else:
      names = [_path_to_hf(path)]
    out[path] = (shape, names)
  return out


def load_hf_checkpoint(directory: str, dtype: Optional[str] = 'float32', param_dtype: Optional[str] = None,
                       scan_layers: bool = False, mesh: Any = None, rules: Any = None) -> tuple[ModelConfig, dict]:
  """Reads a Hugging Face checkpoint directory, one tensor (or one shard of one) at a time.

  Args:
    directory: holds config.json and model.safetensors (or a sharded index).
    dtype: activation / KV-cache dtype of the returned config; None: the checkpoint's own (bfloat16 for a real
      Qwen2.5 release).
    param_dtype: parameter dtype; defaults to `dtype`. Each piece is converted as it is read.
    scan_layers: return the scanned layout (transformer.py: blocks under 'layers', stacked).
    mesh, rules: place every parameter on `mesh` by `rules` (default sharding.LLAMA_RULES; head-aware) as it is
      read: each device's shard is read from the file by slice straight into that device, so the host holds the
      shards it places plus at most a few MB in flight. Without a mesh the params are host numpy arrays.

  Returns:
    (config, params): params shaped as `transformer.param_shapes(config)`.
  """
  from cospec_jax import sharding  # pylint: disable=import-outside-toplevel (only placing needs it)
  config = read_hf_config(directory, dtype, param_dtype, scan_layers)
  out_dtype = config.jnp_param_dtype
  stored = {}
  for path in _weight_files(directory):
    stored.update(_index_file(path))
  layout = _layout(config)
  wanted = {name for _, names in layout.values() for name in names}
  unexpected = [n for n in stored if n not in wanted and not _IGNORED.match(n)
                and not (_hf_to_path(n) == ('lm_head', 'kernel') and config.tie_embeddings)]
  if unexpected:
    raise CheckpointError(f'{directory} has tensors this architecture does not use: {unexpected[:8]}'
                          f'{"..." if len(unexpected) > 8 else ""}; is config.json the right one?')
  missing = sorted(wanted - set(stored))
  if missing:
    raise CheckpointError(f'{directory} lacks tensors {missing[:8]}; the checkpoint is incomplete.')
  for path, (shape, names) in layout.items():
    per_layer = shape.shape[1:] if path[0] == 'layers' else shape.shape
    hf_shape = tuple(per_layer[::-1] if _is_kernel(path) else per_layer)
    for name in names:
      if stored[name].shape != hf_shape:
        raise CheckpointError(f'{name} has shape {stored[name].shape} but config.json implies {hf_shape}.')

  specs = None
  if mesh is not None:
    specs = traverse_util.flatten_dict(sharding.partition_specs(
        transformer.param_shapes(config), sharding.LLAMA_RULES if rules is None else rules, mesh, config))

  def reader(path, names, shape):
    scanned = path[0] == 'layers'

    def read(index):
      index = tuple(index) + (slice(None),) * (len(shape) - len(index))
      out = _scratch(tuple(len(range(*sl.indices(d))) for sl, d in zip(index, shape)), out_dtype)
      layers = range(*index[0].indices(shape[0])) if scanned else [0]
      inner = index[1:] if scanned else index
      for i, layer in enumerate(layers):
        tensor = stored[names[layer]]
        piece = tensor.read(inner[::-1]).T if _is_kernel(path) else tensor.read(inner)  # Stored [out, in].
        if scanned:
          out[i] = piece
        else:
          out[...] = piece
      return out

    return read

  flat = {}
  for path, (shape, names) in layout.items():
    read = reader(path, names, shape.shape)
    if mesh is None:
      flat[path] = read(())
    else:
      # Waiting for each transfer lets its host buffers go before the next tensor is read (else they pile up).
      flat[path] = jax.make_array_from_callback(shape.shape, NamedSharding(mesh, specs[path]), read)
      flat[path].block_until_ready()
  return config, traverse_util.unflatten_dict(flat)


# ----------------------------------------------------------------------------------------------- export


def save_hf_checkpoint(directory: str, config: ModelConfig, params: Any, overwrite: bool = False,
                       max_shard_bytes: int = 4 * 2**30, **config_extra: Any) -> str:
  """Writes `params` as a Hugging Face checkpoint directory, atomically.

  Args:
    directory: where the checkpoint appears (created; must not exist unless `overwrite`).
    config: the model's config.
    params: the 'params' tree of `transformer.Transformer(config)` (scanned or unrolled layers).
    overwrite: replace an existing directory (only after the new one is complete).
    max_shard_bytes: above this, weights are split into shards with a `model.safetensors.index.json`.
    **config_extra: extra config.json entries, e.g. eos_token_id=..., bos_token_id=...

  Returns:
    The directory's path.
  """
  directory = os.path.abspath(directory)
  if os.path.exists(directory) and not overwrite:
    raise FileExistsError(f'{directory} exists; pass overwrite=True or choose another directory.')
  expected = traverse_util.flatten_dict(transformer.param_shapes(config.replace(scan_layers=False)))
  flat = traverse_util.flatten_dict(transformer.unstack_layers(jax.device_get(params)))
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
