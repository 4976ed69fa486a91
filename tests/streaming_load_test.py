"""Streaming import: a ~1.15 GB bfloat16 checkpoint placed on 8 simulated devices by slice costs the host about its
own bytes (the devices' memory is the host's here), not a full copy before placing as a whole-file read would.

The load runs in a fresh subprocess so its peak RSS (VmHWM) is its own; asserted: that peak at most 1.3x the
checkpoint's bytes, and the load's own part (the peak minus the RSS before it: Python, JAX, 8 CPU devices, ~0.2 GB)
at most 1.1x. Measured on a 2-core CPU: 1.24x and 1.075x (before this loader: 4.2x in float32, 2.2x in bfloat16).
"""

import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np

from cospec_jax.models import ModelConfig, hf_checkpoint, transformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 576M parameters in bfloat16: 1.15 GB. Every dimension the rules split divides 8, so nothing is replicated 8 times.
CONFIG = ModelConfig(vocab_size=65536, d_model=2048, n_layers=6, n_heads=16, n_kv_heads=8, head_dim=128, ffw_dim=5632,
                     model_type='llama', dtype='bfloat16', param_dtype='bfloat16')


def _value(name: str, shape) -> np.ndarray:
  """A cheap deterministic tensor whose entries say where they are (so a misplaced slice is caught)."""
  seed = sum(map(ord, name)) % 97
  flat = (np.arange(int(np.prod(shape)), dtype=np.int64) * 7 + seed) % 251
  return (flat.astype(np.float32) / 251.0 - 0.5).astype(jnp.bfloat16).reshape(shape)


def _write_checkpoint(directory: str) -> int:
  """Writes CONFIG as a Hugging Face checkpoint one tensor at a time (the safetensors layout: an 8-byte header
  length, a JSON header, the raw row-major data); returns the data's bytes."""
  os.makedirs(directory)
  with open(os.path.join(directory, 'config.json'), 'w') as f:
    json.dump(hf_checkpoint.config_to_hf(CONFIG), f)
  shapes = {}
  for path, x in _flat(transformer.param_shapes(CONFIG)).items():
    name = hf_checkpoint._path_to_hf(path)  # pylint: disable=protected-access
    shapes[name] = x.shape[::-1] if path[-1] == 'kernel' else x.shape
  header, offset = {}, 0
  for name in sorted(shapes):
    n = int(np.prod(shapes[name])) * 2
    header[name] = {'dtype': 'BF16', 'shape': list(shapes[name]), 'data_offsets': [offset, offset + n]}
    offset += n
  blob = json.dumps(header).encode()
  blob += b' ' * (-len(blob) % 8)
  with open(os.path.join(directory, 'model.safetensors'), 'wb') as f:
    f.write(len(blob).to_bytes(8, 'little') + blob)
    for name in sorted(shapes):
      f.write(_value(name, shapes[name]).tobytes())
  return offset


def _flat(tree, prefix=()):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


CHILD = textwrap.dedent('''
    import json, os, sys
    os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8'
    import jax
    import numpy as np
    from cospec_jax import sharding
    from cospec_jax.models import load_hf_checkpoint

    def status(field):  # VmRSS: resident now; VmHWM: its peak (per address space: not the parent's, unlike ru_maxrss).
      with open('/proc/self/status') as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field)) * 1024

    mesh = sharding.make_mesh(1, 8)
    jax.block_until_ready(jax.device_put(np.zeros(8), jax.devices()[7]))  # Every device started.
    before = status('VmRSS')
    config, params = load_hf_checkpoint(sys.argv[1], dtype=None, scan_layers=True, mesh=mesh)
    jax.block_until_ready(params)
    peak = status('VmHWM')
    q = params['layers']['self_attn']['q_proj']['kernel']
    on_devices = sum(s.data.nbytes for x in jax.tree_util.tree_leaves(params) for s in x.addressable_shards)
    print(json.dumps(dict(before=before, peak=peak, on_devices=on_devices, dtype=str(q.dtype),
                          spec=str(q.sharding.spec), shard=list(q.addressable_shards[3].data.shape),
                          q_layer2_rows=np.asarray(q[2, :3, 1000:1003], np.float32).tolist())))
''')


def test_peak_host_memory_of_a_sharded_load(tmp_path):
  directory = str(tmp_path / 'ckpt')
  data_bytes = _write_checkpoint(directory)
  assert 1.0e9 < data_bytes < 1.3e9
  env = dict(os.environ, PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, '-c', CHILD, directory], capture_output=True, text=True, env=env, check=False,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  r = json.loads(out.stdout.strip().splitlines()[-1])
  assert r['dtype'] == 'bfloat16' and r['spec'] == "P(None, None, 'model')"
  assert r['shard'] == [6, 2048, 256]  # [Y, D, N * H / 8]: 2 whole heads of 128.
  assert data_bytes <= r['on_devices'] < 1.001 * data_bytes  # Split, not replicated (but the small norms).
  # The values landed where the file has them: layer 2's q_proj, stored [out, in], read back transposed.
  want = _value('model.layers.2.self_attn.q_proj.weight', (2048, 2048)).T[:3, 1000:1003].astype(np.float32)
  np.testing.assert_array_equal(np.asarray(r['q_layer2_rows']), want)
  added = (r['peak'] - r['before']) / data_bytes
  print(f'peak host RSS: {r["peak"] / data_bytes:.3f}x the checkpoint ({data_bytes / 1e9:.2f} GB), the load adding '
        f'{added:.3f}x to the {r["before"] / 1e9:.2f} GB before it')
  assert added <= 1.1  # The shards themselves, and a few MB in flight.
  assert r['peak'] <= 1.3 * data_bytes  # Also counting Python, JAX and the devices' start.
