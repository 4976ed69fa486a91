"""Decode speed: target-only vs speculative decoding in one process, against the ideal speedup and HF assisted generation.

For each batch size and gamma it reports tokens/s, the measured draft/target call-cost ratio c, the mean tokens per
target call tau, the ideal speedup tau / (1 + gamma * c), the measured speedup and its fraction of the ideal (the
implementation's efficiency), and the same against tau / (v + gamma * c), where v is the measured cost of one
(gamma+1)-token verify call over a one-token call (1 on memory-bound accelerators, more on a CPU); at batch 1 also
Hugging Face assisted generation on the same pair, exported, and HF's own v (its verify call over its one-token call).

The pair comes from Hugging Face checkpoint directories (`bench.target_path`, `bench.draft_path`; bfloat16 unless
`bench.dtype` says otherwise, each tensor streamed into its shards) or from configs (float32 by default). With
`bench.mesh` larger than 1 x 1 the rows split over its `data` axis and the weights over `model` (sharding.py).
A pair built from configs is random, and two random models almost never agree; so by default the draft and the target
share a bigram backbone (the same embedding and output head, zero-padded to the target's width) on top of which the
blocks of each model are initialised at its config's `initializer_range`: the larger the target's, the more it
departs from the draft. It is a stand-in with a realistic acceptance rate for timing the engine; it says
nothing about model quality.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import multiprocessing
import os
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cospec_jax import files, sharding, timing
from cospec_jax.decoding import AutoregressiveDecoder, DecodeSettings, Exact, SpeculativeDecoder, continuous
from cospec_jax.decoding import prompts as prompts_lib
from cospec_jax.decoding.prompts import pad_prompts
from cospec_jax.models import ModelConfig, config as config_lib, init_params, load_hf_checkpoint, save_hf_checkpoint, transformer


def shared_backbone_pair(target: ModelConfig, draft: ModelConfig, rng: jax.Array, backbone_std: float):
  """Random (target_params, draft_params) whose logits share a bigram backbone; see the module docstring.

  Both models' blocks are initialised at their configs' `initializer_range`; the embedding and the output head are
  one shared draw at `backbone_std` (the draft's width, zero-padded to the target's).
  """
  if (target.d_model < draft.d_model or target.vocab_size != draft.vocab_size or draft.tie_embeddings or
      target.tie_embeddings):
    raise ValueError('shared_backbone_pair needs target.d_model >= draft.d_model, equal vocabularies and untied '
                     f'heads; got d_model {target.d_model} vs {draft.d_model}, vocab {target.vocab_size} vs '
                     f'{draft.vocab_size}, tie_embeddings {target.tie_embeddings} (target), '
                     f'{draft.tie_embeddings} (draft).')
  target_rng, draft_rng, embed_rng, head_rng = jax.random.split(rng, 4)
  target_params, draft_params = init_params(target, target_rng), init_params(draft, draft_rng)
  V, D, pad = draft.vocab_size, draft.d_model, target.d_model - draft.d_model
  embed_VxD = backbone_std * jax.random.normal(embed_rng, (V, D), draft.jnp_param_dtype)
  head_DxV = backbone_std * jax.random.normal(head_rng, (D, V), draft.jnp_param_dtype)
  draft_params['embed_tokens'] = {'embedding': embed_VxD}
  draft_params['lm_head'] = {'kernel': head_DxV}
  target_params['embed_tokens'] = {'embedding': jnp.pad(embed_VxD, ((0, 0), (0, pad))).astype(target.jnp_param_dtype)}
  # The padded width carries nothing, so the target's final norm must not read it as signal: zero its scale there.
  target_params['norm'] = {'weight': jnp.pad(jnp.ones((D,), target.jnp_param_dtype), (0, pad))}
  target_params['lm_head'] = {'kernel': jnp.pad(head_DxV, ((0, pad), (0, 0))).astype(target.jnp_param_dtype)}
  return target_params, draft_params


def pair_dtype(cfg: ml_collections.ConfigDict) -> str:
  """bench.dtype, or its default: bfloat16 for checkpoints (as real pairs are stored and run), float32 for configs."""
  return cfg.get('dtype') or ('bfloat16' if cfg.target_path or cfg.draft_path else 'float32')


def bench_mesh(cfg: ml_collections.ConfigDict):
  """bench.mesh ({data, model}) as a Mesh, or None for one device."""
  mesh = cfg.get('mesh')
  return None if mesh is None else sharding.mesh_from_config(cfg)


def load_pair(cfg: ml_collections.ConfigDict, mesh=None):
  """Returns (target_config, target_params, draft_config, draft_params) from paths or configs, placed on `mesh`
  (weights over `model` by sharding.LLAMA_RULES) when given. Checkpoints are read one model at a time, each tensor
  by slice straight into its shards, with layers scanned."""
  dtype = pair_dtype(cfg)
  if cfg.target_path or cfg.draft_path:
    if not (cfg.target_path and cfg.draft_path):
      raise ValueError('Give both bench.target_path and bench.draft_path, or neither (to use the configs).')
    pair = []
    for path in (cfg.target_path, cfg.draft_path):
      c, p = load_hf_checkpoint(path, dtype=dtype, scan_layers=True, mesh=mesh)
      pair += [c, p if mesh is not None else jax.device_put(p)]
    return tuple(pair)
  tc = config_lib.from_dict(dict(cfg.target.to_dict(), dtype=dtype, param_dtype=dtype))
  dc = config_lib.from_dict(dict(cfg.draft.to_dict(), dtype=dtype, param_dtype=dtype))
  tp, dp = shared_backbone_pair(tc, dc, jax.random.PRNGKey(cfg.seed), cfg.backbone_std)
  if mesh is not None:
    tp = sharding.shard_params(tp, sharding.LLAMA_RULES, mesh, tc)
    dp = sharding.shard_params(dp, sharding.LLAMA_RULES, mesh, dc)
  return tc, tp, dc, dp


def time_call(fn: Callable[[], Any], repeats: int, warmup: Optional[Callable[[], Any]] = None) -> tuple[float, Any]:
  """Runs `warmup` (default: fn) once to compile, then fn `repeats` times; returns (median seconds, last result)."""
  out = jax.block_until_ready((warmup or fn)())
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return float(np.median(times)), out


def call_loop(config: ModelConfig, params, batch_size: int, n_tokens: int, cache_length: int,
              n_calls: int = 64) -> Callable[[], Any]:
  """A thunk running `n_calls` forward calls of `n_tokens` tokens per row into a cache of `cache_length`, in one
  compiled loop (its seconds / n_calls is the cost of one call)."""

  @jax.jit
  def loop(params, cache):
    def body(i, carry):
      cache, token_B = carry
      positions_BxN = jnp.full((batch_size, n_tokens), i, jnp.int32) + jnp.arange(n_tokens, dtype=jnp.int32)[None]
      logits, _, cache = transformer.apply(config, params, jnp.broadcast_to(token_B[:, None], positions_BxN.shape),
                                           positions_BxN, cache)
      return cache, jnp.argmax(logits[:, -1], -1).astype(jnp.int32)
    return jax.lax.fori_loop(0, n_calls, body, (cache, jnp.zeros((batch_size,), jnp.int32)))

  cache = transformer.init_cache(config, batch_size, cache_length)
  return lambda: loop(params, cache)


def time_interleaved(fns: dict[str, Callable[[], Any]], rounds: int,
                     warmups: Optional[dict[str, Callable[[], Any]]] = None, seed: int = 0
                     ) -> tuple[dict[str, list], dict[str, Any]]:
  """Runs each fn (or its warmup) once to compile, then `rounds` rounds that each run every fn once, in an order
  shuffled round by round (`timing.shuffled_rounds`, as the table's `evaluate.time_rows` times). Returns ({name:
  [seconds of each round]}, {name: last result}). Figures take each program's fastest round: a slow spell of the
  machine falls on one round of every program, not on all the repeats of whichever program it met; a ratio computed
  round by round shows the run's own spread."""
  warmups = warmups or {}
  for name, fn in fns.items():
    jax.block_until_ready(warmups.get(name, fn)())
  calls = timing.shuffled_rounds([timing.one_call(fn) for fn in fns.values()], rounds, seed)
  seconds = {name: [r[0][0] for r in calls_R] for name, calls_R in zip(fns, calls)}
  return seconds, {name: calls_R[-1][0][1] for name, calls_R in zip(fns, calls)}


def _prompts(batch_size: int, length: int, vocab_size: int, seed: int):
  rs = np.random.RandomState(seed)
  return [rs.randint(3, vocab_size, length).tolist() for _ in range(batch_size)]


def _stream(n: int, cfg, vocab_size: int, mesh):
  """n random prompts (as the batch's) for continuous batching: (tokens_NxP, lengths_N), replicated on `mesh`."""
  tokens, lengths = pad_prompts(_prompts(n, cfg.prompt_length, vocab_size, cfg.seed + 1), 0, buckets=None)
  return prompts_lib.place(mesh, (), None, (tokens, lengths))[2]


def _stream_call(decoder, params: tuple, stream, batch_size: int, rng: jax.Array) -> tuple[Callable, Callable]:
  """(thunk, warmup) decoding the stream with `batch_size` refilled rows; the warmup compiles it on 1-token budgets."""
  tokens_NxP, lengths_N = stream
  ones = jnp.ones(lengths_N.shape, jnp.int32) if decoder.mesh is None else prompts_lib.place(
      decoder.mesh, (), None, np.ones(lengths_N.shape, np.int32))[2]
  return (lambda: decoder.continuous(*params, tokens_NxP, lengths_N, rng, rows=batch_size),
          lambda: decoder.continuous(*params, tokens_NxP, lengths_N, rng, ones, rows=batch_size))


def export_to_hf(tc, tp, dc, dp, workdir: str) -> tuple[str, str]:
  """The pair exported as float32 Hugging Face checkpoints; returns (target_path, draft_path)."""
  f32 = dict(dtype='float32', param_dtype='float32')
  return tuple(save_hf_checkpoint(os.path.join(workdir, f'hf_{name}'), c.replace(**f32),
                                  jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), p), overwrite=True)
               for name, c, p in (('target', tc, tp), ('draft', dc, dp)))


def hf_tokens_per_s(target, draft, prompt, max_new_tokens: int, gamma, repeats: int) -> float:
  """Tokens/s of HF greedy generation: target-only when `draft` is None, else assisted with `gamma` draft tokens."""
  import torch
  extra = {}
  if draft is not None:
    draft.generation_config.num_assistant_tokens = gamma
    draft.generation_config.num_assistant_tokens_schedule = 'constant'
    draft.generation_config.assistant_confidence_threshold = 0.0
    extra['assistant_model'] = draft
  ids = torch.tensor([prompt])
  with torch.no_grad():
    seconds, tokens = time_call(lambda: target.generate(
        ids, do_sample=False, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, eos_token_id=None,
        pad_token_id=0, **extra), repeats)
  return (tokens.shape[1] - len(prompt)) / seconds


def hf_call_seconds(target, prompt, n_tokens: int, repeats: int, n_calls: int = 16) -> float:
  """Seconds of one HF forward call of `n_tokens` new tokens on a cache at batch 1, as HF's generation makes them
  (eager torch, its Python included): the median over `repeats` loops of `n_calls` calls, each loop after the
  prompt's prefill. HF's counterpart of our call loops (`call_loop`), so its verify cost over a one-token call sits
  beside our `v`."""
  import torch
  import transformers
  ids_1xP = torch.tensor([prompt])
  new_1xN = torch.full((1, n_tokens), prompt[-1])

  def loop():
    cache = transformers.DynamicCache()  # Each call appends its tokens to it in place.
    target(ids_1xP, past_key_values=cache, use_cache=True)
    t0 = time.perf_counter()
    for _ in range(n_calls):
      target(new_1xN, past_key_values=cache, use_cache=True)
    return (time.perf_counter() - t0) / n_calls

  with torch.no_grad():
    loop()  # Warm-up.
    return float(np.median([loop() for _ in range(repeats)]))


def _hf_rates_here(paths: tuple[str, str], prompt, max_new_tokens: int, gammas, repeats: int) -> dict:
  """HF target-only and assisted tokens/s for each gamma, and the target's call costs, in this process (hf_rates)."""
  import transformers  # Only the benchmark's HF comparison needs torch and transformers.
  target, draft = (transformers.AutoModelForCausalLM.from_pretrained(p).eval() for p in paths)
  return {'target_only': hf_tokens_per_s(target, None, prompt, max_new_tokens, None, repeats),
          'assisted': {g: hf_tokens_per_s(target, draft, prompt, max_new_tokens, g, repeats) for g in gammas},
          'call_seconds': {n: hf_call_seconds(target, prompt, n, max(3, repeats))
                           for n in sorted({1} | {g + 1 for g in gammas})}}


def hf_rates(paths: tuple[str, str], prompt, max_new_tokens: int, gammas, repeats: int) -> dict:
  """{'target_only': tokens/s, 'assisted': {gamma: tokens/s}, 'call_seconds': {new tokens: seconds per target
  call}} of HF generation on the exported pair, timed in a child process that exits before our loops are timed:
  torch's thread pool, once started, keeps competing with XLA's for the two cores (measured here: with the HF models
  loaded in the benchmark's process, our target-only loop ran at 125 tokens/s instead of 146 and the measured verify
  cost v dropped from 1.21-1.55 to 1.02-1.29)."""
  context = multiprocessing.get_context('spawn')
  with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
    return pool.submit(_hf_rates_here, paths, prompt, max_new_tokens, tuple(gammas), repeats).result()


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the benchmark grid, prints the table, writes `bench_decode.json` in workdir; returns the results."""
  cfg = config.bench
  os.makedirs(workdir, exist_ok=True)
  mesh = bench_mesh(cfg)
  tc, tp, dc, dp = load_pair(cfg, mesh)
  dtype = pair_dtype(cfg)
  print(f'target {tc.num_params():,} params, draft {dc.num_params():,} params '
        f'(ratio {tc.num_params() / dc.num_params():.1f}x), {dtype}, device {jax.devices()[0].platform}'
        f'{"" if mesh is None else f", mesh {dict(mesh.shape)}"}')
  settings = DecodeSettings(max_new_tokens=cfg.max_new_tokens)
  rng = jax.random.PRNGKey(0)
  if mesh is not None:
    rng = prompts_lib.place(mesh, (), rng)[1]
  hf = None  # HF generation on the same pair at batch 1, timed first, in a process of its own (hf_rates).
  if cfg.hf_compare and 1 in cfg.batch_sizes:
    hf = hf_rates(export_to_hf(tc, tp, dc, dp, workdir), _prompts(1, cfg.prompt_length, tc.vocab_size, cfg.seed)[0],
                  cfg.max_new_tokens, cfg.gammas, max(1, cfg.repeats // 2))
  rows = []
  for batch_size in cfg.batch_sizes:
    sharding.check_batch(batch_size, mesh)
    tokens, lengths = prompts_lib.place(mesh, pad_prompts(
        _prompts(batch_size, cfg.prompt_length, tc.vocab_size, cfg.seed), 0, buckets=None))[0]
    target_only = AutoregressiveDecoder(tc, settings=settings, mesh=mesh)
    draft_only = AutoregressiveDecoder(dc, settings=settings, mesh=mesh)
    cache_length = cfg.prompt_length + cfg.max_new_tokens + max(cfg.gammas) + 1
    n_calls = 64  # Per timed call-cost loop.
    # Every program of this batch size, compiled first, then timed in interleaved rounds (`time_interleaved`).
    fns = {'target': lambda: target_only(tp, tokens, lengths, rng), 'draft': lambda: draft_only(dp, tokens, lengths, rng),
           'one_token': call_loop(tc, tp, batch_size, 1, cache_length, n_calls)}
    warmups = {}
    # At batch > 1, the same decoders over a stream of prompts, finished rows refilled (decoding/continuous.py): a
    # static batch runs until its slowest row is done (at tau tokens per call on average but the fewest for the
    # slowest row), a refilled one keeps every row busy until the stream runs dry. Target-only rows all stop at the
    # same step (no EOS, one budget), so static batching idles none of them: the static target-only rate is the
    # baseline.
    streamed = batch_size > 1 and cfg.get('stream_prompts_per_row', 0)
    stream = _stream(batch_size * cfg.stream_prompts_per_row, cfg, tc.vocab_size, mesh) if streamed else None
    stream_settings = dataclasses.replace(settings, prefill_ahead=batch_size if cfg.stream_prefill_ahead else 0)
    for gamma in cfg.gammas:
      spd = SpeculativeDecoder(tc, dc, Exact(), gamma, settings, mesh=mesh)
      fns[f'spd_{gamma}'] = functools.partial(spd, tp, dp, tokens, lengths, rng)
      fns[f'verify_{gamma}'] = call_loop(tc, tp, batch_size, gamma + 1, cache_length, n_calls)
      if streamed:
        streaming = SpeculativeDecoder(tc, dc, Exact(), gamma, stream_settings, mesh=mesh)
        fns[f'stream_{gamma}'], warmups[f'stream_{gamma}'] = _stream_call(streaming, (tp, dp), stream, batch_size, rng)
    per_round, outs = time_interleaved(fns, cfg.repeats, warmups)
    seconds = {name: min(s) for name, s in per_round.items()}
    rounds_R = {name: np.asarray(s) for name, s in per_round.items()}
    n_tokens = int(jnp.sum(outs['target'].stats.generated_B))
    t_target = seconds['target']
    c = seconds['draft'] / t_target  # Both loops make one call per token: the ratio of their times is the cost ratio.
    for gamma in cfg.gammas:
      st = jax.device_get(outs[f'spd_{gamma}'].stats)
      t_spd = seconds[f'spd_{gamma}']
      tau = st.generated_B.sum() / st.target_calls_B.sum()
      ideal = tau / (1 + gamma * c)
      # The textbook ideal assumes verifying gamma+1 tokens costs one token's call (decoding memory-bound, as on
      # accelerators). Where it does not (a CPU is compute-bound), v measures the verify call's real cost.
      v = seconds[f'verify_{gamma}'] / seconds['one_token']
      ideal_v = tau / (v + gamma * c)
      speedup = t_target / t_spd
      # eff(v) from the fastest rounds, and from each round's own timings alone (target, SPD, the call loops and the
      # draft of one round): how far the run's figures move with the machine, as (min, median, max) over the rounds.
      row = dict(batch=batch_size, gamma=gamma, c=c, v=v, tau=float(tau),
                 target_tokens_per_s=n_tokens / t_target, spd_tokens_per_s=int(st.generated_B.sum()) / t_spd,
                 ideal_speedup=float(ideal), speedup=speedup, efficiency=float(speedup / ideal),
                 ideal_speedup_measured_verify=float(ideal_v),
                 efficiency_measured_verify=float(_efficiency_v(seconds, gamma, tau, f'spd_{gamma}')),
                 efficiency_measured_verify_rounds=spread(_efficiency_v(rounds_R, gamma, tau, f'spd_{gamma}')),
                 call_ms={'one_token': 1e3 * seconds['one_token'] / n_calls,
                          'verify': 1e3 * seconds[f'verify_{gamma}'] / n_calls})
      if batch_size > 1:
        # Counted, not timed: the most of the ideal a schedule allows however cheap the loop, the rows' target calls
        # over (rows x the loop's steps). A static batch steps until its slowest row is done.
        row['schedule_cap'] = float(st.target_calls_B.sum() / (batch_size * st.target_calls_B.max()))
      if streamed:
        sst = jax.device_get(outs[f'stream_{gamma}'].stats)
        tau_stream = sst.generated_B.sum() / sst.target_calls_B.sum()  # Its own prompts': its ideal is its own.
        row['tau_stream'] = float(tau_stream)
        row['spd_stream_tokens_per_s'] = int(sst.generated_B.sum()) / seconds[f'stream_{gamma}']
        row['speedup_stream'] = row['spd_stream_tokens_per_s'] / row['target_tokens_per_s']
        stream_args = (gamma, tau_stream, f'stream_{gamma}', sst.generated_B.sum() / n_tokens)
        row['efficiency_stream_measured_verify'] = float(_efficiency_v(seconds, *stream_args))
        row['efficiency_stream_measured_verify_rounds'] = spread(_efficiency_v(rounds_R, *stream_args))
        # The refilled loop's schedule (continuous.schedule_steps): it steps until the stream's last prompt is done.
        steps = continuous.schedule_steps(sst.target_calls_B, batch_size, stream_settings.refills_per_step,
                                          stream_settings.prefill_ahead)['continuous']
        row['stream_schedule_cap'] = float(sst.target_calls_B.sum() / (batch_size * steps))
      if batch_size == 1 and hf is not None:
        row['hf_target_only_tokens_per_s'] = hf['target_only']
        row['hf_assisted_tokens_per_s'] = hf['assisted'][gamma]
        row['ours_over_hf_assisted'] = row['spd_tokens_per_s'] / row['hf_assisted_tokens_per_s']
        # HF's verify call over its one-token call, as `v` is ours: where torch's few-token products are cheaper
        # than XLA's, HF's verify costs fewer one-token calls and the ratio above narrows (README, Decode speed).
        row['hf_v'] = hf['call_seconds'][gamma + 1] / hf['call_seconds'][1]
        row['hf_call_ms'] = {'one_token': 1e3 * hf['call_seconds'][1], 'verify': 1e3 * hf['call_seconds'][gamma + 1]}
        row['ours_over_hf_cap'] = ours_over_hf_cap(row)
      rows.append(row)
      print(_format_row(row, header=len(rows) == 1))
  result = dict(target_params=tc.num_params(), draft_params=dc.num_params(), dtype=dtype,
                platform=jax.devices()[0].platform, max_new_tokens=cfg.max_new_tokens, rows=rows,
                mesh=None if mesh is None else dict(mesh.shape))
  path = os.path.join(workdir, 'bench_decode.json')
  files.write_atomically(path, json.dumps(result, indent=2))
  print(f'wrote {path}')
  return result


def ours_over_hf_cap(row: dict) -> float:
  """The most `ours_over_hf_assisted` can be for this row's model-call costs: our tokens/s if decoding cost nothing
  but one verify call and gamma draft calls per step (tau / ((v + gamma c) x a one-token call, `call_ms`): no
  prefill, no loop) over HF's measured rate. The measured ratio falls short of it by our loop's overheads and the
  prefill; where the cap is under a bar, no loop reaches the bar with these calls."""
  one_token_call_s = row['call_ms']['one_token'] / 1e3
  ideal_tokens_per_s = row['tau'] / ((row['v'] + row['gamma'] * row['c']) * one_token_call_s)
  return float(ideal_tokens_per_s / row['hf_assisted_tokens_per_s'])


def _efficiency_v(seconds: dict, gamma: int, tau, decoded: str, tokens_ratio=1.0):
  """Speedup of program `decoded` over target-only decoding (`tokens_ratio`: its tokens over target-only's) as a
  fraction of the ideal tau / (v + gamma c). `seconds` by program: floats (the fastest rounds) or arrays (each
  round's own, giving one efficiency per round)."""
  v = seconds[f'verify_{gamma}'] / seconds['one_token']
  c = seconds['draft'] / seconds['target']
  return tokens_ratio * seconds['target'] / seconds[decoded] * (v + gamma * c) / tau


def spread(x_R: np.ndarray) -> list:
  """[min, median, max] of a figure computed round by round (or, in decode_spread.py, run by run)."""
  return [float(np.min(x_R)), float(np.median(x_R)), float(np.max(x_R))]


_COLUMNS = [('batch', 'B', '{:>3d}'), ('gamma', 'gamma', '{:>5d}'), ('c', 'c', '{:>6.3f}'), ('v', 'v', '{:>5.2f}'),
            ('tau', 'tau', '{:>5.2f}'), ('target_tokens_per_s', 'target tok/s', '{:>12.1f}'),
            ('spd_tokens_per_s', 'SPD tok/s', '{:>10.1f}'), ('speedup', 'speedup', '{:>7.2f}'),
            ('ideal_speedup', 'ideal', '{:>6.2f}'), ('efficiency', 'eff', '{:>5.0%}'),
            ('ideal_speedup_measured_verify', 'ideal(v)', '{:>8.2f}'), ('efficiency_measured_verify', 'eff(v)', '{:>6.0%}'),
            ('efficiency_measured_verify_rounds', 'rounds', '{0[0]:>4.0%}-{0[2]:<4.0%}'),
            ('schedule_cap', 'cap', '{:>4.0%}'), ('spd_stream_tokens_per_s', 'refilled SPD tok/s', '{:>18.1f}'),
            ('efficiency_stream_measured_verify', 'refilled eff(v)', '{:>15.0%}'),
            ('efficiency_stream_measured_verify_rounds', 'rounds', '{0[0]:>4.0%}-{0[2]:<4.0%}'),
            ('stream_schedule_cap', 'refilled cap', '{:>12.0%}'),
            ('hf_v', 'HF v', '{:>5.2f}'), ('hf_assisted_tokens_per_s', 'HF assisted tok/s', '{:>17.1f}'),
            ('ours_over_hf_assisted', 'ours/HF', '{:>7.2f}'), ('ours_over_hf_cap', 'ours/HF cap', '{:>11.2f}')]


def _format_row(row: dict, header: bool) -> str:
  cells = [fmt.format(row[k]) if k in row else ' ' * _width(fmt) for k, _, fmt in _COLUMNS]
  line = ' | '.join(cells)
  if not header:
    return line
  names = ' | '.join(name.rjust(_width(fmt)) for _, name, fmt in _COLUMNS)
  return names + '\n' + '-' * len(names) + '\n' + line


def _width(fmt: str) -> int:
  return len(fmt.format([0.0] * 3 if '[' in fmt else 0))
