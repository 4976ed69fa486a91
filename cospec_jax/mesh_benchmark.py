"""Decode throughput against mesh shape and batch size: greedy SPD and target-only decoding of one random target
(its first layers are the draft) on every (data, model) mesh of config.bench.meshes that the devices allow, at each
batch size.

Every mesh decodes the same tokens (tests/sharding_test.py checks it), so the table compares only speed. On the 8
simulated CPU devices of one machine (XLA_FLAGS=--xla_force_host_platform_device_count=8) the "devices" share the
same cores and memory: the numbers show the cost of the partitioning and the collectives XLA inserts, not the gain of
real chips. A model axis there only adds all-reduces; on a TPU slice it divides the weights and their memory
traffic, which is what makes a 32B target fit and decode. Run it on the TPU VM for numbers that mean throughput.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import ml_collections
import numpy as np

from cospec_jax import files, sharding
from cospec_jax.decoding import AutoregressiveDecoder, DecodeSettings, Exact, SpeculativeDecoder
from cospec_jax.models import config as config_lib
from cospec_jax.models import init_params


def _time(fn, repeats: int) -> tuple[float, object]:
  out = fn()  # Compile.
  jax.block_until_ready(out.tokens_BxT)
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out.tokens_BxT)
    best = min(best, time.perf_counter() - t0)
  return best, out


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Measures, prints the table, writes bench_mesh.json to `workdir`."""
  b = config.bench
  target = config_lib.from_dict(b.target.to_dict())
  tp = init_params(target, jax.random.PRNGKey(0))
  # The draft is the target's first layers (self-speculative), so a random pair still agrees often enough.
  draft = dataclasses.replace(target, n_layers=b.draft_layers)
  dp = {k: v for k, v in tp.items() if not k.startswith('layers_') or int(k.split('_')[1]) < b.draft_layers}
  settings = DecodeSettings(max_new_tokens=b.max_new_tokens)
  n_devices = len(jax.devices())
  rows = []
  for data, model in b.meshes:
    if data * model > n_devices:
      print(f'mesh {data}x{model}: skipped, needs {data * model} devices and {n_devices} are visible '
            '(XLA_FLAGS=--xla_force_host_platform_device_count=8 simulates 8 on a CPU)')
      continue
    mesh = sharding.make_mesh(data, model)
    placed = [sharding.shard_params(p, config.mesh.rules, mesh) for p in (tp, dp)]
    spd = SpeculativeDecoder(target, draft, Exact(), b.gamma, settings, mesh=mesh)
    one = AutoregressiveDecoder(target, settings=settings, mesh=mesh)
    for batch in b.batch_sizes:
      if batch % data:
        continue
      rs = np.random.RandomState(batch)  # The same prompts on every mesh.
      prompts = [rs.randint(3, target.vocab_size, b.prompt_length).tolist() for _ in range(batch)]
      spd_s, out = _time(lambda: spd.generate(placed[0], placed[1], prompts), b.repeats)
      ar_s, _ = _time(lambda: one.generate(placed[0], prompts), b.repeats)
      st = sharding.fetch(out.stats)
      generated = int(st.generated_B.sum())
      rows.append({'data': data, 'model': model, 'batch': batch, 'spd_tokens_per_s': generated / spd_s,
                   'target_tokens_per_s': generated / ar_s,
                   'tau': generated / max(int(st.target_calls_B.sum()), 1)})
      r = rows[-1]
      print(f'mesh {data}x{model} batch {batch}: SPD {r["spd_tokens_per_s"]:.0f} tok/s, target-only '
            f'{r["target_tokens_per_s"]:.0f} tok/s, tau {r["tau"]:.2f}', flush=True)
  result = {'device': str(jax.devices()[0].device_kind), 'devices': n_devices, 'gamma': b.gamma,
            'max_new_tokens': b.max_new_tokens, 'rows': rows}
  os.makedirs(workdir, exist_ok=True)
  files.write_atomically(os.path.join(workdir, 'bench_mesh.json'), json.dumps(result, indent=1))
  print(format_table(result))
  return result


def format_table(result: dict) -> str:
  lines = [f'{result["devices"]} x {result["device"]}, gamma {result["gamma"]}, {result["max_new_tokens"]} new '
           'tokens per row; tokens/s of the fastest pass.', '',
           '| data x model | batch | SPD tok/s | target-only tok/s | tau |', '|---|---|---|---|---|']
  for r in result['rows']:
    lines.append(f'| {r["data"]} x {r["model"]} | {r["batch"]} | {r["spd_tokens_per_s"]:.0f} | '
                 f'{r["target_tokens_per_s"]:.0f} | {r["tau"]:.2f} |')
  return '\n'.join(lines) + '\n'
