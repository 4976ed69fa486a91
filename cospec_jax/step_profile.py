"""Where one speculative step's time goes: each part of the step timed as its own compiled loop.

A part (draft catch-up, draft proposals, verify, rule, commit, statistics, sources, records) runs `n_calls` times in a
`lax.fori_loop` on a mid-generation state of the benchmark's pair, its inputs fed from the loop carry so XLA cannot
hoist it; its time per call is the loop's median time over `repeats` runs divided by `n_calls`. The whole generation's
time per step (the decoder's while loop, divided by its steps) is measured beside the parts: what it costs beyond
their sum is the loop's own overhead (the while-loop carry, copies XLA inserts, control flow).

  python experiments/profile_step.py --config=configs/bench_decode.py --workdir=runs/profile_step
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cospec_jax import decode_benchmark, files
from cospec_jax.decoding import DecodeSettings, Exact, SpeculativeDecoder
from cospec_jax.decoding import speculative, state as state_lib
from cospec_jax.decoding.autoregressive import prefill
from cospec_jax.decoding.prompts import pad_prompts
from cospec_jax.decoding.rules import Block
from cospec_jax.models import transformer


def _loop_seconds(fn, carry, n_calls: int, repeats: int) -> float:
  """Seconds per call of `carry -> carry` run n_calls times in one compiled fori_loop."""
  looped = jax.jit(lambda c: jax.lax.fori_loop(0, n_calls, lambda i, c: fn(c), c))
  return decode_benchmark.time_call(lambda: looped(carry), repeats)[0] / n_calls


def profile(tc, tp, dc, dp, batch_size: int, gamma: int, prompt_length: int, max_new_tokens: int, repeats: int,
            n_calls: int = 32) -> dict:
  """Milliseconds per step of each part of an Exact SPD step at `batch_size` rows, and of the whole loop per step."""
  G, V = gamma, tc.vocab_size
  settings = DecodeSettings(max_new_tokens=max_new_tokens)
  decoder = SpeculativeDecoder(tc, dc, Exact(), gamma, settings)
  prompts = decode_benchmark._prompts(batch_size, prompt_length, V, 0)
  tokens_BxP, lengths_B = (jnp.asarray(x) for x in pad_prompts(prompts, 0, buckets=None))
  T = decoder.buffer_length(prompt_length)
  # Mid-generation: the prompt and half the budget committed, both caches written up to there.
  mid = prompt_length + max_new_tokens // 2
  filled_BxM = jnp.asarray(np.random.RandomState(1).randint(3, V, (batch_size, mid)), jnp.int32)
  target_cache = prefill(tc, tp, filled_BxM, T)
  draft_cache = prefill(dc, dp, filled_BxM, T)
  state = state_lib.DecodeState(
      jnp.zeros((batch_size, T), jnp.int32).at[:, :mid].set(filled_BxM), jnp.full((batch_size,), mid, jnp.int32),
      jnp.zeros((batch_size,), bool), target_cache, draft_cache, jax.random.PRNGKey(0),
      state_lib.DecodeStats.zeros(batch_size), sources_BxT=jnp.zeros((batch_size, T), jnp.int8))
  max_new_B = jnp.full((batch_size,), max_new_tokens, jnp.int32)
  ms = {}

  def catch_up(carry):
    st = carry
    last_B = st.lengths_B - 1
    positions_Bx2 = jnp.maximum(last_B - 1, 0)[:, None] + jnp.arange(2)[None, :]
    logits, _, cache = transformer.apply(dc, dp, jnp.take_along_axis(st.tokens_BxT, positions_Bx2, 1),
                                         positions_Bx2, st.draft_cache)
    return st.replace(draft_cache=cache, rng=jax.random.fold_in(st.rng, jnp.argmax(logits[0, -1])))

  def proposals(carry):
    st = carry
    draft, cache = speculative.propose(dc, dp, Exact().sampler, st, G, V, st.rng)
    return st.replace(draft_cache=cache, rng=jax.random.fold_in(st.rng, draft.tokens_BxG[0, -1]))

  def verify(carry):
    st = carry
    last_B = st.lengths_B - 1
    tokens_BxG1 = jnp.take_along_axis(st.tokens_BxT, last_B[:, None] + jnp.arange(G + 1)[None, :] - G, 1)
    logits, _, cache = transformer.apply(tc, tp, tokens_BxG1, last_B[:, None] + jnp.arange(G + 1)[None, :],
                                         st.target_cache)
    return st.replace(target_cache=cache, rng=jax.random.fold_in(st.rng, jnp.argmax(logits[0, -1])))

  def proposals_then_verify(carry):  # Both in one body: what they cost together, against their sum alone.
    st = carry
    proposed, cache = speculative.propose(dc, dp, Exact().sampler, st, G, V, st.rng)
    last_B = st.lengths_B - 1
    tokens_BxG1 = jnp.concatenate([state_lib.gather_B(st.tokens_BxT, last_B)[:, None], proposed.tokens_BxG], 1)
    logits, _, target_cache = transformer.apply(tc, tp, tokens_BxG1, last_B[:, None] + jnp.arange(G + 1)[None, :],
                                                st.target_cache)
    return st.replace(draft_cache=cache, target_cache=target_cache,
                      rng=jax.random.fold_in(st.rng, jnp.argmax(logits[0, -1])))

  def proposals_beside_verify(carry):  # The same work, but the verify reads the buffer's tokens, not the draft's.
    st = carry
    _, cache = speculative.propose(dc, dp, Exact().sampler, st, G, V, st.rng)
    return verify(st.replace(draft_cache=cache))

  draft = speculative.Draft(*jax.jit(lambda st: dataclasses.astuple(
      speculative.propose(dc, dp, Exact().sampler, st, G, V, st.rng)[0]))(state))
  last_B = state.lengths_B - 1
  verify_BxG1 = jnp.concatenate([state_lib.gather_B(state.tokens_BxT, last_B)[:, None], draft.tokens_BxG], 1)
  t_logits, t_hidden, _ = transformer.apply(tc, tp, verify_BxG1, last_B[:, None] + jnp.arange(G + 1)[None, :],
                                            state.target_cache)
  block = Block(draft.tokens_BxG, draft.logits_BxGxV, t_logits[..., :V], draft.hidden_BxGxD, t_hidden,
                jnp.full((batch_size,), max_new_tokens // 2, jnp.int32), max_new_B)

  def rule(carry):
    blk, n_B = carry
    verdict = Exact()(blk.replace(target_logits_BxG1xV=blk.target_logits_BxG1xV + n_B[:, None, None] * 0.0),
                      jax.random.PRNGKey(0))
    return blk, verdict.n_accepted_B + verdict.next_token_B * 0

  verdict = Exact()(block, jax.random.PRNGKey(0))
  n_B = verdict.n_accepted_B
  block_BxG1 = jnp.where(jnp.arange(G + 1)[None, :] < n_B[:, None], jnp.pad(draft.tokens_BxG, ((0, 0), (0, 1))),
                         verdict.next_token_B[:, None])

  def commit(carry):
    st = carry
    # Rewind the length each call so the loop keeps writing the same slots (the cost, not the growth, is measured).
    new, _ = state_lib.commit(st, block_BxG1, n_B + 1, max_new_B + st.lengths_B, st.lengths_B, (), 0)
    return new.replace(lengths_B=st.lengths_B, done_B=st.done_B)

  def stats(carry):
    st = carry
    committed_B = n_B + 1 + st.stats.generated_B * 0
    mismatch_BxG = jnp.arange(G)[None, :] == n_B[:, None]
    committed_BxG = jnp.arange(G)[None, :] < committed_B[:, None]
    return st.replace(stats=st.stats.add(~st.done_B, target_calls=1, draft_calls=G, proposed=G,
                                         accepted=jnp.minimum(n_B, committed_B),
                                         mismatches=jnp.sum(mismatch_BxG & committed_BxG, axis=1),
                                         kept_at_mismatch=jnp.zeros_like(n_B), generated=committed_B))

  def sources(carry):
    st = carry
    return st.replace(sources_BxT=speculative._record_sources(
        st.sources_BxT, st.lengths_B + st.stats.generated_B * 0, n_B + 1, n_B, jnp.zeros((batch_size, G), bool)))

  ms['draft catch-up (2-token call)'] = _loop_seconds(catch_up, state, n_calls, repeats) * 1e3
  ms[f'draft proposals ({G} calls, catch-up included)'] = _loop_seconds(proposals, state, n_calls, repeats) * 1e3
  ms[f'verify ({G + 1}-token target call)'] = _loop_seconds(verify, state, n_calls, repeats) * 1e3
  ms['draft proposals + verify, one body'] = _loop_seconds(proposals_then_verify, state, n_calls, repeats) * 1e3
  ms['the same, verify not fed by the draft'] = _loop_seconds(proposals_beside_verify, state, n_calls, repeats) * 1e3
  ms['rule (Exact)'] = _loop_seconds(rule, (block, n_B), n_calls, repeats) * 1e3
  ms['commit'] = _loop_seconds(commit, state, n_calls, repeats) * 1e3
  ms['statistics'] = _loop_seconds(stats, state, n_calls, repeats) * 1e3
  ms['sources'] = _loop_seconds(sources, state, n_calls, repeats) * 1e3
  rule_free = state.replace(prompt_lengths_B=jnp.full((batch_size,), prompt_length, jnp.int32),
                            max_new_B=jnp.full((batch_size,), 10 * max_new_tokens, jnp.int32))

  def whole_step(carry):
    st = carry
    new = decoder._step(tp, dp, None, st)
    return new.replace(lengths_B=st.lengths_B, done_B=st.done_B)  # Rewound, as for commit.

  ms['one whole step (fori_loop)'] = _loop_seconds(whole_step, rule_free, n_calls, repeats) * 1e3
  both = jax.jit(lambda t, d: (prefill(tc, t, tokens_BxP, T), prefill(dc, d, tokens_BxP, T)))
  ms['prefill of both models (once per call)'] = decode_benchmark.time_call(lambda: both(tp, dp), repeats)[0] * 1e3
  rng = jax.random.PRNGKey(0)
  seconds, gen = decode_benchmark.time_call(lambda: decoder(tp, dp, tokens_BxP, lengths_B, rng), repeats)
  steps = int(jax.device_get(gen.stats.target_calls_B).max())
  ms['whole loop per step'] = seconds / steps * 1e3
  ms['whole loop per step, prefill excluded'] = ms['whole loop per step'] - ms[
      'prefill of both models (once per call)'] / steps
  parts = [f'draft proposals ({G} calls, catch-up included)', f'verify ({G + 1}-token target call)', 'rule (Exact)',
           'commit', 'statistics', 'sources']  # One step's own parts, each counted once.
  ms['sum of parts'] = sum(ms[k] for k in parts)
  return dict(batch=batch_size, gamma=gamma, steps=steps, ms=ms)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Profiles an SPD step at each of bench.profile_batch_sizes and bench.profile_gammas; prints and writes
  profile_step.json in workdir."""
  cfg = config.bench
  os.makedirs(workdir, exist_ok=True)
  tc, tp, dc, dp = decode_benchmark.load_pair(cfg)
  results = []
  for batch_size in cfg.get('profile_batch_sizes', (1, 8)):
    for gamma in cfg.get('profile_gammas', (4,)):
      r = profile(tc, tp, dc, dp, batch_size, gamma, cfg.prompt_length, cfg.max_new_tokens, cfg.repeats)
      results.append(r)
      print(f'B={batch_size} gamma={gamma} ({r["steps"]} steps)')
      for k, v in r['ms'].items():
        print(f'  {k:<45s} {v:8.3f} ms')
  path = os.path.join(workdir, 'profile_step.json')
  files.write_atomically(path, json.dumps(results, indent=2))
  print(f'wrote {path}')
  return dict(rows=results)
