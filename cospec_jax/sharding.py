"""Device meshes and shardings: the batch over a `data` axis, the models' weights over a `model` axis.

This is what `pmap` became. `pmap` maps one program over devices along the batch only; `jax.jit` with `NamedSharding`
compiles one global program for a (data, model) mesh, so data and model parallelism compose, and XLA inserts the
collectives. On 8 simulated CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count=8`) it runs unchanged.

- `make_mesh(data, model)`: a mesh over every device of every process (use -1 for "the rest").
- `partition_specs(params, rules, mesh, config)` / `shard_params(...)`: parameter sharding from (regex, partition)
  pairs, the first pattern that matches a parameter's path ('layers_0/self_attn/q_proj/kernel') wins, as in
  big_vision. Scanned layers ('layers/...', a leading [Y] axis) take the same rules; with the model's config, an
  attention projection splits over `model` only by whole heads.
- `abstract_params(config, rules, mesh)`: the same placement as jax.ShapeDtypeStructs (AOT compiles, no memory).
- `for_mesh(config, mesh)`: the model config whose KV cache splits over `model` by whole heads (kv_repeat).
- `batch_sharding(mesh)`, `put(x, sharding)`: host arrays onto the mesh, in one or many processes.
- `constrain_batch(tree, mesh)`, `constrain_cache(cache, mesh)`: the decode state inside the compiled loop.
- `fetch(tree)`: a global array back to every host's memory, multi-process included.
- `initialize_distributed(config)`: `jax.distributed.initialize()` driven by the config or the environment.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Optional, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA, MODEL = 'data', 'model'

# Megatron-style tensor parallelism for the Llama/Qwen family of models/transformer.py: the column-parallel
# projections split their outputs over `model`, the row-parallel ones their inputs, so each block needs one
# all-reduce after attention and one after the MLP. The embedding is split over the vocabulary; norms are replicated.
LLAMA_RULES = (
    (r'embed_tokens/embedding$', (MODEL, None)),
    (r'(q_proj|k_proj|v_proj|gate_proj|up_proj)/kernel$', (None, MODEL)),
    (r'(q_proj|k_proj|v_proj)/bias$', (MODEL,)),
    (r'(o_proj|down_proj)/kernel$', (MODEL, None)),
    (r'lm_head/kernel$', (None, MODEL)),
    (r'.*', ()),
)


def make_mesh(data: int = -1, model: int = 1, devices: Optional[Sequence[Any]] = None) -> Mesh:
  """A (data, model) mesh. One size may be -1: the mesh then covers all of `devices` (default: every device of every
  process, what a pod needs). With both sizes given, it takes the first data * model devices."""
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  if data == -1 and model > 0 and n % model == 0:
    data = n // model
  elif model == -1 and data > 0 and n % data == 0:
    model = n // data
  if data < 1 or model < 1 or data * model > n:
    raise ValueError(f'mesh data={data} x model={model} does not fit the {n} devices; choose sizes whose product '
                     f'is at most {n}, or set one to -1 to use them all.')
  devices = devices[:data * model]
  return jax.make_mesh((data, model), (DATA, MODEL), (AxisType.Auto, AxisType.Auto), devices=devices)


def mesh_from_config(config) -> Optional[Mesh]:
  """`config.mesh` ({data, model}) as a Mesh, or None when absent or when it is 1 x 1 on one device."""
  if config is None or config.get('mesh') is None:
    return None
  mesh = make_mesh(config.mesh.data, config.mesh.model)
  return None if mesh.size == 1 else mesh


def _path(key_path) -> str:
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', k))) for k in key_path)


# Dimensions (of one layer's parameter) that hold attention heads, each head `head_dim` wide: such a dimension is
# split over a mesh axis only by whole heads.
_HEAD_DIMS = ((re.compile(r'(q_proj|k_proj|v_proj)/kernel$'), 1), (re.compile(r'(q_proj|k_proj|v_proj)/bias$'), 0),
              (re.compile(r'o_proj/kernel$'), 0))
SCANNED = 'layers'  # Top-level name of a scanned stack of blocks (transformer.py): its leaves lead with [Y].


def partition_specs(params: Any, rules: Sequence[tuple[str, Sequence[Optional[str]]]], mesh: Mesh,
                    config: Any = None) -> Any:
  """PartitionSpecs for `params` from the first (regex, partition) rule that `re.search`es each path.

  A dimension whose size the mesh axis does not divide is replicated instead (and logged), so one rule set serves a
  tiny test model and a 7B one. With `config` (the ModelConfig), a heads dimension of an attention projection must
  split into whole heads (`head_dim` wide) or is replicated: never a head cut in two. A scanned stack's parameters
  ('layers/...') get the rule's partition after their leading layer axis. A parameter that no rule matches is an
  error naming it.
  """
  compiled = [(re.compile(pattern), tuple(spec)) for pattern, spec in rules]

  def spec_for(key_path, x):
    path = _path(key_path)
    for pattern, spec in compiled:
      if pattern.search(path):
        break
    else:
      raise ValueError(f'No partition rule matches parameter {path!r}; add a (pattern, partition) pair for it, or a '
                       "final ('.*', ()) to replicate the rest.")
    scanned = path.split('/')[0] == SCANNED
    shape = np.shape(x)[1:] if scanned else np.shape(x)
    if len(spec) > len(shape):
      raise ValueError(f'Partition {spec} for {path!r} has more axes than its shape {np.shape(x)}.')
    head_dim = None
    if config is not None:
      head_dim = next((d for pattern, d in _HEAD_DIMS if pattern.search(path)), None)
    fitted = []
    for i, (dim, axis) in enumerate(zip(shape, spec)):
      unit = config.head_dim if head_dim == i else 1
      if axis is not None and dim % (mesh.shape[axis] * unit):
        logging.info('%s: dimension %d is not divisible by mesh axis %s=%d%s; replicated.', path, dim, axis,
                     mesh.shape[axis], f' heads of {unit}' if unit > 1 else '')
        axis = None
      fitted.append(axis)
    return PartitionSpec(*(([None] if scanned else []) + fitted))

  return jax.tree_util.tree_map_with_path(spec_for, params)


def abstract_params(config: Any, rules: Sequence[tuple[str, Sequence[Optional[str]]]], mesh: Mesh) -> Any:
  """The parameters of `config` as jax.ShapeDtypeStructs placed by `rules` on `mesh` (which may hold abstract TPU
  devices): what `shard_params` would give, for AOT compilation without memory or devices."""
  from cospec_jax.models import transformer  # sharding.py stays importable without the models.
  shapes = transformer.param_shapes(config)
  specs = partition_specs(shapes, rules, mesh, config)
  return jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(mesh, s)), shapes, specs)


def kv_repeat(config: Any, mesh: Optional[Mesh]) -> int:
  """Copies of each key/value head that let the KV cache split over `model` by whole heads (MaxText's layout): 1
  when the kv heads already divide the axis, axis // kv heads when that many copies keep each cache head serving
  whole query heads, else 1 (the cache is then replicated over `model`, and logged)."""
  if mesh is None:
    return 1
  m, k, n = mesh.shape[MODEL], config.n_kv_heads, config.n_heads
  if k % m == 0:
    return 1
  if m % k == 0 and n % m == 0 and (n // k) % (m // k) == 0:
    return m // k
  logging.info('%d kv heads of %d query heads cannot split over model=%d by whole heads; KV cache replicated.', k, n,
               m)
  return 1


def for_mesh(config: Any, mesh: Optional[Mesh]) -> Any:
  """`config` with the kv_repeat that `mesh` needs (unchanged without a mesh)."""
  return config if mesh is None else config.replace(kv_repeat=kv_repeat(config.replace(kv_repeat=1), mesh))


def put(x: Any, sharding: NamedSharding) -> jax.Array:
  """A host (or single-device) array as a global array with `sharding`; every process passes the same full value
  and places only the pieces its own devices hold. A typed PRNG key stays a key."""
  if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    return jax.random.wrap_key_data(put(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
  if isinstance(x, jax.Array) and x.sharding == sharding:
    return x
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def on_mesh(tree: Any, mesh: Mesh) -> Any:
  """Leaves already placed on `mesh` stay; the others (host values every process shares) are replicated on it."""
  def place(x):
    if isinstance(x, jax.Array) and isinstance(x.sharding, NamedSharding) and x.sharding.mesh == mesh:
      return x
    return put(x, NamedSharding(mesh, PartitionSpec()))

  return jax.tree_util.tree_map(place, tree)


def shard_params(params: Any, rules: Sequence[tuple[str, Sequence[Optional[str]]]], mesh: Mesh,
                 config: Any = None) -> Any:
  """`params` placed on `mesh` by `partition_specs` (head-aware with the model's `config`)."""
  specs = partition_specs(params, rules, mesh, config)
  return jax.tree_util.tree_map(lambda x, s: put(x, NamedSharding(mesh, s)), params, specs)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis over `data`, the rest replicated."""
  return NamedSharding(mesh, PartitionSpec(DATA))


def check_batch(batch_size: int, mesh: Optional[Mesh]) -> None:
  if mesh is not None and batch_size % mesh.shape[DATA]:
    raise ValueError(f'batch of {batch_size} rows does not split over the mesh\'s data axis of {mesh.shape[DATA]}; '
                     f'use a batch size that is a multiple of {mesh.shape[DATA]}.')


def constrain_batch(tree: Any, mesh: Optional[Mesh]) -> Any:
  """Inside jit: every leaf's leading (batch) axis split over `data`."""
  if mesh is None:
    return tree
  return jax.tree_util.tree_map(lambda x: jax.lax.with_sharding_constraint(x, batch_sharding(mesh)), tree)


def cache_spec(cache_heads: int, mesh: Mesh) -> PartitionSpec:
  """The KV cache [Y, B, S, C, H]: rows over `data`, cache heads over `model` when they divide it."""
  return PartitionSpec(None, DATA, None, MODEL if cache_heads % mesh.shape[MODEL] == 0 else None, None)


def rows_cache_spec(cache_heads: int, mesh: Mesh) -> PartitionSpec:
  """A few rows of a KV cache held whole on every `data` shard (a refill's rows, prompts prefilled ahead), heads split
  as the cache's."""
  return PartitionSpec(None, None, *cache_spec(cache_heads, mesh)[2:])


def constrain_cache(cache: Any, mesh: Optional[Mesh], rows_on_every_shard: bool = False) -> Any:
  """Inside jit: KV caches [Y, B, S, C, H] split over `data` by row (or, with `rows_on_every_shard`, every row on
  every data shard: `rows_cache_spec`) and over `model` by cache head (when the heads divide evenly; `for_mesh`
  repeats kv heads so that they do)."""
  if mesh is None or cache is None:
    return cache
  spec = rows_cache_spec if rows_on_every_shard else cache_spec

  def constrain(x_YxBxSxCxH):
    return jax.lax.with_sharding_constraint(x_YxBxSxCxH, NamedSharding(mesh, spec(x_YxBxSxCxH.shape[3], mesh)))

  return jax.tree_util.tree_map(constrain, cache)


def fetch(tree: Any) -> Any:
  """`jax.device_get`, also for arrays spread over several processes (gathered to every host)."""
  def get(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      from jax.experimental import multihost_utils
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return jax.device_get(x)

  return jax.tree_util.tree_map(get, tree)


def initialize_distributed(config) -> bool:
  """Starts `jax.distributed` for a multi-process run; returns whether it did.

  Driven by `config.distributed` (a pipeline's `config.arbiter.distributed`): {enabled, coordinator_address,
  num_processes, process_id}, empty fields read from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID or
  else left to JAX, which finds them itself on TPU pods and SLURM; or by the environment variable
  COSPEC_DISTRIBUTED=1. On CPU the collectives go through gloo.
  """
  dist = None
  if config is not None:  # A pipeline config keeps it with the arbiter's settings.
    dist = config.get('distributed') or (config.get('arbiter') or {}).get('distributed')
  enabled = (dist is not None and dist.get('enabled', False)) or os.environ.get('COSPEC_DISTRIBUTED') == '1'
  if not enabled:
    return False
  kwargs = {}
  for key, var in (('coordinator_address', 'JAX_COORDINATOR_ADDRESS'), ('num_processes', 'JAX_NUM_PROCESSES'),
                   ('process_id', 'JAX_PROCESS_ID')):
    value = dist.get(key) if dist is not None else None
    if value is None or value == '' or (key != 'coordinator_address' and value < 0):
      value = os.environ.get(var)  # Unset in both: left to JAX's own cluster detection.
    if value is not None and value != '':
      kwargs[key] = value if key == 'coordinator_address' else int(value)
  # CPU collectives (tests, a laptop); ignored by TPU and GPU. Set before any backend starts.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(**kwargs)
  return True
