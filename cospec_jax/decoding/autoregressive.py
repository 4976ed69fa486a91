"""One-model decoding (target-only or draft-only): one token per forward pass, the whole generation one jit."""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from cospec_jax import sharding
from cospec_jax.decoding import continuous as continuous_lib
from cospec_jax.decoding import prompts as prompts_lib
from cospec_jax.decoding.sampling import Greedy, Sampler
from cospec_jax.decoding.state import DecodeState, DecodeStats, Generation, commit, gather_B
from cospec_jax.models import transformer
from cospec_jax.models.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
  """What every generation needs besides its models. Hashable: part of the compiled program's identity."""

  max_new_tokens: int = 64  # Token budget per row (a per-row `max_new_B` may lower it).
  eos_ids: tuple[int, ...] = ()  # A row stops after committing any of these.
  pad_id: int = 0  # Fills the buffer after each row's tokens.
  max_len: Optional[int] = None  # Upper bound on prompt + new tokens + one block; None: no bound.
  vocab_size: Optional[int] = None  # The tokenizer's; a draft and target whose heads differ by padding compare these.
  prefill_chunk: int = 256  # Prompt positions per prefill call (bounds its score tensor); 0: the prompt in one call.
  # Continuous batching: most freed rows refilled after one step, in one prefill call (the rest on the next);
  # 0: every freed row.
  refills_per_step: int = 0
  # Continuous batching: prompts prefilled ahead together, this many in one call into a cache of their own, each
  # copied into the row that frees (at most this many rows refilled per step); 0: each step's freed rows prefilled in
  # place, in one call of their own. Most refills free one row, and a one-row prefill call costs a quarter of an
  # eight-row one on a CPU (13 against 52 ms, the decode benchmark's target), about as much where calls are bound by
  # reading the weights (accelerators): ahead, the rows' prompts share calls. Costs a cache of this many rows.
  prefill_ahead: int = 0

  def __post_init__(self):
    if self.max_new_tokens < 1:
      raise ValueError(f'max_new_tokens={self.max_new_tokens} must be >= 1.')
    if self.prefill_chunk < 0:
      raise ValueError(f'prefill_chunk={self.prefill_chunk} must be >= 0 (0 prefills the prompt in one call).')
    if self.refills_per_step < 0:
      raise ValueError(f'refills_per_step={self.refills_per_step} must be >= 0 (0 refills every freed row).')
    if self.prefill_ahead < 0:
      raise ValueError(f'prefill_ahead={self.prefill_ahead} must be >= 0 (0 prefills freed rows in place).')
    object.__setattr__(self, 'eos_ids', tuple(int(e) for e in self.eos_ids))

  @classmethod
  def for_tokenizer(cls, tokenizer, max_new_tokens: int, **kwargs) -> 'DecodeSettings':
    """Settings that stop at the tokenizer's EOS, pad with its PAD, and know its vocabulary size."""
    return cls(max_new_tokens=max_new_tokens, eos_ids=(tokenizer.eos_id,), pad_id=tokenizer.pad_id,
               vocab_size=tokenizer.vocab_size, **kwargs)


def prefill(config: ModelConfig, params, tokens_BxP: jax.Array, buffer_length: int, chunk: int = 0,
            mesh: Optional[Mesh] = None):
  """Writes every prompt position's keys/values into a fresh cache of `buffer_length` slots; returns the cache.

  With `chunk` > 0 the prompt goes through the cache `chunk` positions per call (a scan over the whole chunks, then
  one call for the rest), so no call holds a [B, heads, P, S] score tensor for the whole prompt.
  """
  cache = sharding.constrain_cache(transformer.init_cache(config, tokens_BxP.shape[0], buffer_length), mesh)
  return prefill_into(config, params, cache, tokens_BxP, chunk, mesh)


def prefill_into(config: ModelConfig, params, cache, tokens_BxP: jax.Array, chunk: int = 0,
                 mesh: Optional[Mesh] = None):
  """`prefill` into an existing cache: positions 0..P-1 of every row are overwritten; returns the cache."""
  B, P = tokens_BxP.shape
  fits = P <= transformer.cache_length(cache)  # Every block then lies inside the cache (else positions past it drop).

  def call(cache, tokens_BxL, start):
    positions_BxL = jnp.broadcast_to(start + jnp.arange(tokens_BxL.shape[1], dtype=jnp.int32), tokens_BxL.shape)
    _, _, cache = transformer.apply(config, params, tokens_BxL, positions_BxL, cache, block_write=fits)
    return sharding.constrain_cache(cache, mesh)

  n_whole = P // chunk if 0 < chunk < P else 0
  if n_whole:
    chunks_NxBxC = jnp.moveaxis(tokens_BxP[:, :n_whole * chunk].reshape(B, n_whole, chunk), 1, 0)
    cache, _ = jax.lax.scan(lambda cache, i_toks: (call(cache, i_toks[1], i_toks[0] * chunk), None), cache,
                            (jnp.arange(n_whole, dtype=jnp.int32), chunks_NxBxC))
  if n_whole * chunk < P:
    cache = call(cache, tokens_BxP[:, n_whole * chunk:], n_whole * chunk)
  return cache


def prefill_chunked(config: ModelConfig, params, cache, tokens_KxP: jax.Array, chunk: int = 0,
                    lengths_K: Optional[jax.Array] = None):
  """`prefill_into` for refills: with 0 < `chunk` < P and the prompts' `lengths_K` (traced) given, only the chunks
  that hold the longest prompt are computed (ceil(max length / chunk) calls), not the bucket's padding. Returns the
  cache (its rows' entries past each prompt are stale: decoding overwrites them before reading)."""
  K, P = tokens_KxP.shape
  if lengths_K is None or not 0 < chunk < P:
    return prefill_into(config, params, cache, tokens_KxP, chunk)
  n_chunks = -(-P // chunk)
  padded_KxQ = jnp.pad(tokens_KxP, ((0, 0), (0, n_chunks * chunk - P)))
  fits = n_chunks * chunk <= transformer.cache_length(cache)  # The last chunk's block too (see prefill_into).

  def call(i, cache):
    start = i * chunk
    positions_KxC = jnp.broadcast_to(start + jnp.arange(chunk, dtype=jnp.int32), (K, chunk))
    _, _, cache = transformer.apply(config, params, jax.lax.dynamic_slice_in_dim(padded_KxQ, start, chunk, 1),
                                    positions_KxC, cache, block_write=fits)
    return cache

  return jax.lax.fori_loop(0, (jnp.max(lengths_K) + chunk - 1) // chunk, call, cache)


def init_state(tokens_BxP: jax.Array, lengths_B: jax.Array, buffer_length: int, pad_id: int, target_cache,
               draft_cache, rng: jax.Array, max_new_B: Optional[jax.Array] = None) -> DecodeState:
  B, P = tokens_BxP.shape
  tokens_BxT = jnp.full((B, buffer_length), pad_id, jnp.int32).at[:, :P].set(tokens_BxP.astype(jnp.int32))
  done_B = jnp.zeros((B,), bool) if max_new_B is None else max_new_B <= 0  # A row with no budget decodes nothing.
  return DecodeState(tokens_BxT, lengths_B.astype(jnp.int32), done_B, target_cache, draft_cache, rng,
                     DecodeStats.zeros(B), prompt_lengths_B=lengths_B.astype(jnp.int32), max_new_B=max_new_B)


def per_row_budget(max_new_B: Optional[jax.Array], batch_size: int, max_new_tokens: int) -> jax.Array:
  if max_new_B is None:
    return jnp.full((batch_size,), max_new_tokens, jnp.int32)
  return jnp.minimum(jnp.asarray(max_new_B, jnp.int32), max_new_tokens)


@dataclasses.dataclass(frozen=True)
class AutoregressiveDecoder:
  """Decodes with one model. Static and hashable, so `__call__` is compiled once per prompt shape."""

  model: ModelConfig
  sampler: Sampler = Greedy()
  settings: DecodeSettings = DecodeSettings()
  mesh: Optional[Mesh] = None  # Rows over its `data` axis, weights as the caller placed them (sharding.py).

  def __post_init__(self):
    object.__setattr__(self, 'model', sharding.for_mesh(self.model, self.mesh))  # KV cache split by whole heads.

  def buffer_length(self, prompt_length: int) -> int:
    return prompt_length + self.settings.max_new_tokens + 1

  def _init(self, params, tokens_BxP: jax.Array, lengths_B: jax.Array, rng: jax.Array,
            max_new_B: jax.Array) -> DecodeState:
    s = self.settings
    B, P = tokens_BxP.shape
    T = self.buffer_length(P)
    prompts_lib.check_buffer(P, T, s.max_len)
    sharding.check_batch(B, self.mesh)
    cache = prefill(self.model, params, tokens_BxP, T, s.prefill_chunk, self.mesh)
    return init_state(tokens_BxP, lengths_B, T, s.pad_id, cache, None, rng, max_new_B).constrain(self.mesh)

  def _step(self, params, state: DecodeState) -> DecodeState:
    """One token for every row (done rows compute and commit nothing)."""
    s = self.settings
    rng, sample_rng = jax.random.split(state.rng)
    last_B = state.lengths_B - 1
    logits_Bx1xV, _, cache = transformer.apply(self.model, params, gather_B(state.tokens_BxT, last_B)[:, None],
                                               last_B[:, None], state.target_cache)
    next_B = self.sampler.sample(logits_Bx1xV[:, 0], sample_rng)
    active_B = ~state.done_B
    state, n_B = commit(state.replace(target_cache=cache, rng=rng), next_B[:, None], jnp.ones_like(next_B),
                        state.max_new_B, state.prompt_lengths_B, s.eos_ids, s.pad_id)
    return state.replace(stats=state.stats.add(active_B, target_calls=1, generated=n_B)).constrain(self.mesh)

  @functools.partial(jax.jit, static_argnums=0)
  def __call__(self, params, tokens_BxP: jax.Array, lengths_B: jax.Array, rng: jax.Array,
               max_new_B: Optional[jax.Array] = None) -> Generation:
    """Generates from right-padded prompts.

    Args:
      params: the model's parameters.
      tokens_BxP: int32 prompts, right-padded.
      lengths_B: int32 prompt lengths, >= 1.
      rng: PRNG key (unused by Greedy).
      max_new_B: optional per-row token budgets (capped by settings.max_new_tokens).

    Returns:
      Generation with target_calls_B == generated_B (one forward pass per token; the prefill is not counted).
    """
    max_new_B = per_row_budget(max_new_B, tokens_BxP.shape[0], self.settings.max_new_tokens)
    state = self._init(params, tokens_BxP, lengths_B, rng, max_new_B)
    state = jax.lax.while_loop(lambda st: jnp.any(~st.done_B), functools.partial(self._step, params), state)
    return Generation(state.tokens_BxT, lengths_B.astype(jnp.int32), state.lengths_B, state.stats)

  @functools.partial(jax.jit, static_argnums=0, static_argnames='rows')
  def continuous(self, params, tokens_NxP: jax.Array, lengths_N: jax.Array, rng: jax.Array,
                 max_new_N: Optional[jax.Array] = None, *, rows: int) -> Generation:
    """Continuous batching (decoding/continuous.py): N >= `rows` prompts through `rows` rows, a finished row
    refilled with the next waiting prompt inside the loop. Returns a Generation over the N prompts in order."""
    N = tokens_NxP.shape[0]
    continuous_lib.check_rows(N, rows)
    max_new_N = per_row_budget(max_new_N, N, self.settings.max_new_tokens)
    first = continuous_lib.first_rows
    state = self._init(params, first(tokens_NxP, rows), first(lengths_N, rows), rng, first(max_new_N, rows))
    s = self.settings
    queue = continuous_lib.start(state, tokens_NxP, lengths_N, max_new_N, None, s.prefill_ahead, self.mesh)

    def prefill(caches, tokens_KxP, lengths_K):
      return prefill_chunked(self.model, params, caches[0], tokens_KxP, s.prefill_chunk, lengths_K), None

    return continuous_lib.loop(state, queue, functools.partial(self._step, params), prefill, s.pad_id,
                               s.refills_per_step, self.mesh)

  def generate(self, params, prompts: Sequence[Sequence[int]], rng: Optional[jax.Array] = None,
               buckets: Optional[Sequence[int]] = prompts_lib.DEFAULT_BUCKETS,
               max_new: Optional[int] = None) -> Generation:
    """Host convenience: pads token lists, checks them, and runs the compiled loop. `max_new`: every row's budget
    of new tokens (default settings.max_new_tokens; a traced input, so any value reuses the compiled loop; 0 runs
    the prefill alone, as `evaluate.compiled_pass` does to compile a pass without decoding)."""
    s = self.settings
    (tokens_BxP, lengths_B, max_new_B), rng, _ = prompts_lib.call_inputs(
        prompts, s.pad_id, self.model.vocab_size, buckets, s.max_new_tokens if max_new is None else max_new,
        self.mesh, rng)
    return self(params, tokens_BxP, lengths_B, rng, max_new_B)

  def generate_batches(self, params, prompts: Sequence[Sequence[int]], batch_size: int,
                       rng: Optional[jax.Array] = None,
                       buckets: Optional[Sequence[int]] = prompts_lib.DEFAULT_BUCKETS, max_new: Optional[int] = None):
    """Yields (Generation, n) for consecutive chunks of `prompts`, `batch_size` rows per compiled call
    (`prompts.padded_chunks`: only the first n rows of a chunk are real). Chunk keys are `rng` folded with the
    chunk's start; with no `rng`, every chunk uses `generate`'s default key. `max_new` as in `generate`."""
    for start, chunk, n in prompts_lib.padded_chunks(prompts, batch_size):
      yield self.generate(params, chunk, None if rng is None else jax.random.fold_in(rng, start), buckets,
                          max_new), n

  def generate_in_batches(self, params, prompts: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Greedy/sampled completions of any number of prompts, `batch_size` rows per compiled call. Returns one token
    list per prompt."""
    return [c.tolist() for gen, n in self.generate_batches(params, prompts, batch_size)
            for c in gen.completions()[:n]]

  def generate_continuous(self, params, prompts: Sequence[Sequence[int]], batch_size: int,
                          rng: Optional[jax.Array] = None, max_new: Optional[Sequence[int]] = None,
                          buckets: Optional[Sequence[int]] = prompts_lib.DEFAULT_BUCKETS) -> Generation:
    """Host convenience for `continuous`: every prompt through `batch_size` rows in one compiled call, finished rows
    refilled; `max_new` optional per-prompt budgets. Returns one Generation over `prompts`, in their order."""
    n = len(prompts)
    padded = list(prompts) + [prompts[-1]] * max(0, batch_size - n)
    tokens_NxP, lengths_N = prompts_lib.prepare(padded, self.settings.pad_id, self.model.vocab_size, buckets)
    max_new_N = None if max_new is None else np.asarray(list(max_new) + [max_new[-1]] * (len(padded) - n), np.int32)
    rng = jax.random.PRNGKey(0) if rng is None else rng
    _, rng, (tokens_NxP, lengths_N, max_new_N) = prompts_lib.place(self.mesh, (), rng,
                                                                   (tokens_NxP, lengths_N, max_new_N))
    gen = self.continuous(params, tokens_NxP, lengths_N, rng, max_new_N, rows=batch_size)
    return gen if len(padded) == n else jax.tree_util.tree_map(lambda x: x[:n], gen)
