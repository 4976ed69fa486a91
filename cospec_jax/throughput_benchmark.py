"""Throughput of static against continuous batching on a long-tailed length distribution, in one process.

N prompts (random tokens, random lengths) each get a token budget drawn from a log-normal distribution clipped to
[min_new_tokens, max_new_tokens]: most answers short, a few long, as GSM8K completions are. Every row runs to its
budget (a random pair never says EOS on cue), so the budgets are the answer lengths.

  static      the prompts in consecutive chunks of B rows, one compiled call per chunk; a chunk runs until its
              longest answer is done, its finished rows idling.
  continuous  one compiled call over all N prompts (decoding/continuous.py): a finished row is refilled with the
              next waiting prompt inside the loop.

Both for target-only decoding and greedy SPD, at each batch size. tokens/s counts generated tokens over the wall
time of the whole workload (prefills included). Before the timed run each program runs once with every budget 1
(the same shapes, so the same compiled program) to compile. The two modes' tokens are compared: for greedy decoding
they must be identical (`identical` in the JSON).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cospec_jax import decode_benchmark, files
from cospec_jax.decoding import AutoregressiveDecoder, DecodeSettings, Exact, SpeculativeDecoder
from cospec_jax.decoding.prompts import pad_prompts


def workload(n: int, min_prompt: int, max_prompt: int, median_new: float, sigma: float, min_new: int,
             max_new: int, vocab_size: int, seed: int) -> tuple[list[list[int]], np.ndarray]:
  """(prompts, budgets_N): n random prompts of lengths in [min_prompt, max_prompt] and log-normal budgets."""
  rs = np.random.RandomState(seed)
  prompts = [rs.randint(3, vocab_size, rs.randint(min_prompt, max_prompt + 1)).tolist() for _ in range(n)]
  budgets = np.clip(np.round(median_new * np.exp(sigma * rs.randn(n))), min_new, max_new).astype(np.int32)
  return prompts, budgets


def _timed(fn) -> tuple[float, list]:
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn())
  return time.perf_counter() - t0, out


def measure(decoder, params: tuple, tokens_NxP: np.ndarray, lengths_N: np.ndarray, budgets_N: np.ndarray,
            batch_size: int) -> dict:
  """Seconds and completions of the workload, static and continuous, each after a compile run."""
  N = len(lengths_N)
  if N % batch_size:
    raise ValueError(f'{N} prompts do not split into chunks of {batch_size} rows; pick n_prompts a multiple of it.')
  rng = jax.random.PRNGKey(0)
  chunks = [(jnp.asarray(tokens_NxP[i:i + batch_size]), jnp.asarray(lengths_N[i:i + batch_size]),
             jnp.asarray(budgets_N[i:i + batch_size])) for i in range(0, N, batch_size)]

  def static(ones: bool):
    return [decoder(*params, t, l, rng, jnp.ones_like(b) if ones else b) for t, l, b in chunks]

  def continuous(ones: bool):
    budgets = jnp.ones((N,), jnp.int32) if ones else jnp.asarray(budgets_N)
    return decoder.continuous(*params, jnp.asarray(tokens_NxP), jnp.asarray(lengths_N), rng, budgets,
                              rows=batch_size)

  out = {}
  for name, fn in (('static', static), ('continuous', continuous)):
    jax.block_until_ready(fn(True))  # Compiles; every budget 1, so it is quick.
    seconds, gen = _timed(lambda: fn(False))
    gens = gen if isinstance(gen, list) else [gen]
    out[name] = (seconds, [c for g in gens for c in g.completions()])
  return out


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the grid (batch sizes x {target-only, SPD}), prints the table, writes bench_throughput.json in workdir."""
  cfg = config.bench
  os.makedirs(workdir, exist_ok=True)
  tc, tp, dc, dp = decode_benchmark.load_pair(cfg)
  w = cfg.workload
  prompts, budgets_N = workload(w.n_prompts, w.min_prompt, w.max_prompt, w.median_new, w.sigma, w.min_new,
                                cfg.max_new_tokens, tc.vocab_size, cfg.seed)
  tokens_NxP, lengths_N = pad_prompts(prompts, 0, buckets=None)
  n_tokens = int(budgets_N.sum())
  print(f'target {tc.num_params():,} params, draft {dc.num_params():,} params, {decode_benchmark.pair_dtype(cfg)}, '
        f'device {jax.devices()[0].platform}; {w.n_prompts} prompts, budgets median {np.median(budgets_N):.0f}, '
        f'mean {budgets_N.mean():.1f}, max {budgets_N.max()} ({n_tokens} tokens)')
  settings = DecodeSettings(max_new_tokens=cfg.max_new_tokens)
  rows = []
  for batch_size in cfg.batch_sizes:
    chunk_max = budgets_N.reshape(-1, batch_size).max(1)
    # Prefilling ahead changes only the continuous loop (the stage of B rows), never a static call.
    batch_settings = dataclasses.replace(settings, prefill_ahead=batch_size if cfg.prefill_ahead else 0)
    for name, decoder, params in (('target', AutoregressiveDecoder(tc, settings=batch_settings), (tp,)),
                                  (f'SPD gamma={cfg.gamma}',
                                   SpeculativeDecoder(tc, dc, Exact(), cfg.gamma, batch_settings), (tp, dp))):
      m = measure(decoder, params, tokens_NxP, lengths_N, budgets_N, batch_size)
      (t_static, static), (t_cont, cont) = m['static'], m['continuous']
      identical = all(np.array_equal(a, b) for a, b in zip(static, cont))
      assert [len(c) for c in cont] == budgets_N.tolist(), 'every row runs to its budget'
      row = dict(batch=batch_size, decoder=name, static_tokens_per_s=n_tokens / t_static,
                 continuous_tokens_per_s=n_tokens / t_cont, continuous_over_static=t_static / t_cont,
                 static_seconds=t_static, continuous_seconds=t_cont, identical=identical,
                 # What row refilling can win at most when every step costs the same: static decodes each chunk for
                 # its longest answer, a perfectly packed continuous batch only the mean per row.
                 packing_bound=float(chunk_max.sum() * batch_size / n_tokens))
      rows.append(row)
      print(_format_row(row, header=len(rows) == 1))
  result = dict(target_params=tc.num_params(), draft_params=dc.num_params(), platform=jax.devices()[0].platform,
                n_prompts=w.n_prompts, generated_tokens=n_tokens, budgets=budgets_N.tolist(),
                max_new_tokens=cfg.max_new_tokens, gamma=cfg.gamma, rows=rows)
  path = os.path.join(workdir, 'bench_throughput.json')
  files.write_atomically(path, json.dumps(result, indent=2))
  print(f'wrote {path}')
  return result


_COLUMNS = [('batch', 'B', '{:>3d}'), ('decoder', 'decoder', '{:>11s}'),
            ('static_tokens_per_s', 'static tok/s', '{:>12.1f}'),
            ('continuous_tokens_per_s', 'continuous tok/s', '{:>16.1f}'),
            ('continuous_over_static', 'cont/static', '{:>11.2f}'), ('packing_bound', 'bound', '{:>5.2f}'),
            ('identical', 'same tokens', '{!s:>11}')]


def _format_row(row: dict, header: bool) -> str:
  line = ' | '.join(fmt.format(row[k]) for k, _, fmt in _COLUMNS)
  if not header:
    return line
  names = ' | '.join(name.rjust(len(fmt.format(0 if k != 'decoder' else ''))) for k, name, fmt in _COLUMNS)
  return names + '\n' + '-' * len(names) + '\n' + line
