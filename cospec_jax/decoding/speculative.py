"""Speculative decoding: the draft proposes `gamma` tokens, the target scores them in one pass, a rule keeps a prefix.

One step of the compiled loop, for a row with `L` committed tokens (positions 0..L-1):
  draft   catches up on positions L-2, L-1 in one 2-token call (the block before may have ended with a target token
          the draft never saw), then proposes d_1..d_G with G-1 one-token calls;
  target  scores [x_{L-1}, d_1..d_G] at positions L-1..L+G-1 in one call: G+1 predictions;
  rule    keeps n draft tokens and appends one more (a correction, or the bonus after a fully kept block);
  commit  writes them at positions L..L+n and advances the length. Cache entries past the new length are stale and
          simply overwritten later: rollback is length bookkeeping only.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from cospec_jax import sharding
from cospec_jax.decoding import prompts as prompts_lib
from cospec_jax.decoding import continuous as continuous_lib
from cospec_jax.decoding.autoregressive import DecodeSettings, init_state, per_row_budget, prefill, prefill_chunked
from cospec_jax.decoding.rules import Block, Exact
from cospec_jax.decoding import state as state_lib
from cospec_jax.decoding.state import DecodeState, Generation, append_records, commit, gather_B
from cospec_jax.models import transformer
from cospec_jax.models.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class Draft:
  """The tokens a draft proposed, with the logits they were drawn from and the hidden states behind those."""

  tokens_BxG: jax.Array
  logits_BxGxV: jax.Array
  hidden_BxGxD: jax.Array


def propose(config: ModelConfig, params, sampler, state: DecodeState, gamma: int, vocab_size: int,
            rng: jax.Array) -> tuple[Draft, transformer.Cache]:
  """Runs the draft `gamma` times from each row's committed length; returns the proposal and the draft cache."""
  last_B = state.lengths_B - 1
  rngs = jax.random.split(rng, gamma)
  # Catch-up: re-feeding position L-2 is harmless when it is already cached, and needed when it is not.
  start_B = jnp.maximum(last_B - 1, 0)
  positions_Bx2 = start_B[:, None] + jnp.arange(2)[None, :]
  logits_Bx2xV, hidden_Bx2xD, cache = transformer.apply(
      config, params, jnp.take_along_axis(state.tokens_BxT, positions_Bx2, 1), positions_Bx2, state.draft_cache)
  logits_BxV = gather_B(logits_Bx2xV, last_B - start_B)[:, :vocab_size]
  hidden_BxD = gather_B(hidden_Bx2xD, last_B - start_B)
  token_B = sampler.sample(logits_BxV, rngs[0])

  def draft_one(carry, i_and_rng):
    cache, token_B = carry
    i, rng = i_and_rng
    logits_Bx1xV, hidden_Bx1xD, cache = transformer.apply(config, params, token_B[:, None], (last_B + i)[:, None],
                                                          cache)
    logits_BxV = logits_Bx1xV[:, 0, :vocab_size]
    next_B = sampler.sample(logits_BxV, rng)
    return (cache, next_B), (next_B, logits_BxV, hidden_Bx1xD[:, 0])

  (cache, _), (rest_GmxB, rest_logits_GmxBxV, rest_hidden_GmxBxD) = jax.lax.scan(
      draft_one, (cache, token_B), (jnp.arange(1, gamma, dtype=jnp.int32), rngs[1:]))
  stack = lambda first_Bx, rest_GmxBx: jnp.concatenate(  # noqa: E731
      [first_Bx[:, None], jnp.moveaxis(rest_GmxBx, 0, 1)], axis=1)
  return Draft(stack(token_B, rest_GmxB), stack(logits_BxV, rest_logits_GmxBxV),
               stack(hidden_BxD, rest_hidden_GmxBxD)), cache


@dataclasses.dataclass(frozen=True)
class SpeculativeDecoder:
  """Draft/target decoding under an acceptance rule. Static and hashable: compiled once per prompt shape."""

  target: ModelConfig
  draft: ModelConfig
  rule: object = Exact()  # Any rule of decoding/rules.py; its `sampler` drives the draft.
  gamma: int = 4  # Draft tokens per target call.
  settings: DecodeSettings = DecodeSettings()
  vocab_size: Optional[int] = None  # Shared vocabulary when the two heads differ only by padding rows.
  max_decisions: int = 0  # Per-row buffer for the rule's decision records (CoSpec rollouts); 0 keeps none.
  mesh: Optional[Mesh] = None  # Rows over its `data` axis, weights as the caller placed them (sharding.py).

  def __post_init__(self):
    for name in ('target', 'draft'):  # KV caches split over the mesh's `model` axis by whole heads.
      object.__setattr__(self, name, sharding.for_mesh(getattr(self, name), self.mesh))
    if not isinstance(self.gamma, int) or self.gamma < 1:
      raise ValueError(f'gamma={self.gamma!r}: the draft must propose at least 1 token per target call.')
    if self.vocab_size is None and self.target.vocab_size != self.draft.vocab_size and self.settings.vocab_size:
      object.__setattr__(self, 'vocab_size', self.settings.vocab_size)  # The tokenizer's rows (for_tokenizer).
    if self.vocab_size is None and self.target.vocab_size != self.draft.vocab_size:
      raise ValueError(
          f'Draft vocabulary ({self.draft.vocab_size}) differs from the target\'s ({self.target.vocab_size}). The '
          'two models must share a tokenizer. If one head only has extra padding rows (as Qwen2.5-0.5B vs 7B do), '
          'pass vocab_size=<the tokenizer\'s size> to compare the shared rows.')
    if self.vocab_size is not None and self.vocab_size > min(self.target.vocab_size, self.draft.vocab_size):
      raise ValueError(f'vocab_size={self.vocab_size} exceeds a model\'s head (draft {self.draft.vocab_size}, '
                       f'target {self.target.vocab_size}).')

  @property
  def shared_vocab_size(self) -> int:
    return self.vocab_size or self.target.vocab_size

  def buffer_length(self, prompt_length: int) -> int:
    return prompt_length + self.settings.max_new_tokens + self.gamma + 1

  def _block_shapes(self, B: int) -> Block:
    G, V, f32 = self.gamma, self.shared_vocab_size, jnp.float32
    s = jax.ShapeDtypeStruct
    return Block(s((B, G), jnp.int32), s((B, G, V), f32), s((B, G + 1, V), f32), s((B, G, self.draft.d_model),
                 self.draft.jnp_dtype), s((B, G + 1, self.target.d_model), self.target.jnp_dtype),
                 s((B,), jnp.int32), s((B,), jnp.int32))

  def _empty_records(self, B: int, rule_params):
    """Zeroed [B, max_decisions, ...] buffers shaped like the rule's record, or None."""
    if not self.max_decisions:
      return None
    record = jax.eval_shape(lambda b, p: self.rule(b, jax.random.PRNGKey(0), p).record, self._block_shapes(B),
                            rule_params)
    if record is None:
      raise ValueError(f'max_decisions={self.max_decisions} but rule {type(self.rule).__name__} records nothing.')
    return jax.tree_util.tree_map(lambda x: jnp.zeros((B, self.max_decisions) + x.shape[2:], x.dtype), record)

  def _init(self, target_params, draft_params, tokens_BxP: jax.Array, lengths_B: jax.Array, rng: jax.Array,
            max_new_B: jax.Array, rule_params: Any, row_params: Any = None) -> DecodeState:
    """The state after prefilling both models' caches with right-padded prompts."""
    s = self.settings
    B, P = tokens_BxP.shape
    T = self.buffer_length(P)
    prompts_lib.check_buffer(P, T, s.max_len)
    sharding.check_batch(B, self.mesh)
    state = init_state(tokens_BxP, lengths_B, T, s.pad_id,
                       prefill(self.target, target_params, tokens_BxP, T, s.prefill_chunk, self.mesh),
                       prefill(self.draft, draft_params, tokens_BxP, T, s.prefill_chunk, self.mesh), rng, max_new_B)
    state = state.replace(sources_BxT=jnp.full((B, T), state_lib.PROMPT, jnp.int8), row_params=row_params)
    records = self._empty_records(B, rule_params)
    if records is not None:
      state = state.replace(records=records, n_records_B=jnp.zeros((B,), jnp.int32))
    return state.constrain(self.mesh)

  def _step(self, target_params, draft_params, rule_params: Any, state: DecodeState) -> DecodeState:
    """One draft-verify-commit step for every row (done rows compute and commit nothing)."""
    s, G, V = self.settings, self.gamma, self.shared_vocab_size
    rng, draft_rng, rule_rng = jax.random.split(state.rng, 3)
    draft, draft_cache = propose(self.draft, draft_params, self.rule.sampler, state, G, V, draft_rng)
    last_B = state.lengths_B - 1
    verify_BxG1 = jnp.concatenate([gather_B(state.tokens_BxT, last_B)[:, None], draft.tokens_BxG], axis=1)
    target_logits_BxG1xV, target_hidden_BxG1xD, target_cache = transformer.apply(
        self.target, target_params, verify_BxG1, last_B[:, None] + jnp.arange(G + 1)[None, :], state.target_cache)
    block = Block(draft.tokens_BxG, draft.logits_BxGxV, target_logits_BxG1xV[..., :V], draft.hidden_BxGxD,
                  target_hidden_BxG1xD, state.lengths_B - state.prompt_lengths_B, state.max_new_B)
    if state.row_params is not None:
      rule_params = {**(rule_params or {}), **state.row_params}
    verdict = self.rule(block, rule_rng, rule_params)
    n_B = verdict.n_accepted_B
    # The kept draft tokens, then the rule's token at index n (later entries are never committed).
    drafted_BxG1 = jnp.pad(draft.tokens_BxG, ((0, 0), (0, 1)))
    block_BxG1 = jnp.where(jnp.arange(G + 1)[None, :] < n_B[:, None], drafted_BxG1, verdict.next_token_B[:, None])
    active_B = ~state.done_B
    start_B = state.lengths_B
    state, committed_B = commit(state.replace(target_cache=target_cache, draft_cache=draft_cache, rng=rng),
                                block_BxG1, n_B + 1, state.max_new_B, state.prompt_lengths_B, s.eos_ids, s.pad_id)
    # Only what was committed counts: a mismatch past an EOS or the budget decided nothing.
    committed_BxG = jnp.arange(G)[None, :] < committed_B[:, None]
    mismatch_BxG = (jnp.arange(G)[None, :] == n_B[:, None]) if verdict.mismatch_BxG is None else verdict.mismatch_BxG
    kept_BxG = jnp.zeros_like(mismatch_BxG) if verdict.kept_BxG is None else verdict.kept_BxG
    if state.sources_BxT is not None:
      state = state.replace(sources_BxT=_record_sources(state.sources_BxT, start_B, committed_B, n_B, kept_BxG))
    if state.records is not None:
      record = verdict.record.replace(mask_BxG=verdict.record.mask_BxG & committed_BxG)
      new_records, n_records_B = append_records(state.records, state.n_records_B, record, active_B)
      state = state.replace(records=new_records, n_records_B=n_records_B)
    stats = state.stats.add(active_B, target_calls=1, draft_calls=G, proposed=G,
                            accepted=jnp.minimum(n_B, committed_B),
                            mismatches=jnp.sum(mismatch_BxG & committed_BxG, axis=1),
                            kept_at_mismatch=jnp.sum(kept_BxG & committed_BxG, axis=1), generated=committed_B)
    return state.replace(stats=stats).constrain(self.mesh)

  @functools.partial(jax.jit, static_argnums=0)
  def __call__(self, target_params, draft_params, tokens_BxP: jax.Array, lengths_B: jax.Array, rng: jax.Array,
               max_new_B: Optional[jax.Array] = None, rule_params: Any = None) -> Generation:
    """Generates from right-padded prompts (see AutoregressiveDecoder.__call__ for the arguments).

    `rule_params` goes to every rule call (the CoSpec arbiter's policy and lam).

    Returns:
      Generation whose stats count target/draft calls, proposed, accepted and mismatched tokens per row, and,
      with max_decisions > 0, the rule's decision records.
    """
    B = tokens_BxP.shape[0]
    max_new_B = per_row_budget(max_new_B, B, self.settings.max_new_tokens)
    state = self._init(target_params, draft_params, tokens_BxP, lengths_B, rng, max_new_B, rule_params)
    step = functools.partial(self._step, target_params, draft_params, rule_params)
    state = jax.lax.while_loop(lambda st: jnp.any(~st.done_B), step, state)
    return Generation(state.tokens_BxT, lengths_B.astype(jnp.int32), state.lengths_B, state.stats, state.records,
                      state.n_records_B, state.sources_BxT)

  @functools.partial(jax.jit, static_argnums=0, static_argnames='rows')
  def continuous(self, target_params, draft_params, tokens_NxP: jax.Array, lengths_N: jax.Array, rng: jax.Array,
                 max_new_N: Optional[jax.Array] = None, rule_params: Any = None, row_params: Any = None, *,
                 rows: int) -> Generation:
    """Continuous batching (decoding/continuous.py): N >= `rows` right-padded prompts through `rows` rows, a
    finished row refilled with the next waiting prompt inside the loop. `row_params` is a pytree of per-prompt
    [N, ...] arrays merged into `rule_params` for the row that holds the prompt (e.g. Oracle's keep_at_B).

    Returns:
      Generation over the N prompts in their order: for a deterministic rule the tokens, statistics and records
      static batching gives each prompt.
    """
    N = tokens_NxP.shape[0]
    continuous_lib.check_rows(N, rows)
    max_new_N = per_row_budget(max_new_N, N, self.settings.max_new_tokens)
    first = continuous_lib.first_rows
    state = self._init(target_params, draft_params, first(tokens_NxP, rows), first(lengths_N, rows), rng,
                       first(max_new_N, rows), rule_params, first(row_params, rows))
    s = self.settings
    queue = continuous_lib.start(state, tokens_NxP, lengths_N, max_new_N, row_params, s.prefill_ahead, self.mesh)

    def prefill(caches, tokens_KxP, lengths_K):
      return (prefill_chunked(self.target, target_params, caches[0], tokens_KxP, s.prefill_chunk, lengths_K),
              prefill_chunked(self.draft, draft_params, caches[1], tokens_KxP, s.prefill_chunk, lengths_K))

    return continuous_lib.loop(state, queue, functools.partial(self._step, target_params, draft_params, rule_params),
                               prefill, s.pad_id, s.refills_per_step, self.mesh)

  def generate(self, target_params, draft_params, prompts: Sequence[Sequence[int]],
               rng: Optional[jax.Array] = None,
               buckets: Optional[Sequence[int]] = prompts_lib.DEFAULT_BUCKETS, rule_params: Any = None,
               max_new: Optional[int] = None) -> Generation:
    """Host convenience: pads token lists, checks them, and runs the compiled loop. `max_new`: every row's budget
    of new tokens (default settings.max_new_tokens; a traced input, so any value reuses the compiled loop; 0 runs
    the prefill alone, as the table's timing does to measure a call's fixed cost)."""
    s = self.settings
    (tokens_BxP, lengths_B, max_new_B), rng, rule_params = prompts_lib.call_inputs(
        prompts, s.pad_id, self.shared_vocab_size, buckets, s.max_new_tokens if max_new is None else max_new,
        self.mesh, rng, rule_params)
    return self(target_params, draft_params, tokens_BxP, lengths_B, rng, max_new_B, rule_params)

  def generate_in_batches(self, target_params, draft_params, prompts: Sequence[Sequence[int]], batch_size: int,
                          rng: Optional[jax.Array] = None, rule_params: Any = None, row_params: Any = None,
                          buckets: Optional[Sequence[int]] = prompts_lib.DEFAULT_BUCKETS,
                          max_new: Optional[int] = None):
    """Yields (Generation, n) for consecutive chunks of `prompts`, `batch_size` rows per compiled call; a short last
    chunk is padded with copies of its last prompt (`prompts.padded_chunks`), and only its first n rows are real.
    `row_params` is a pytree of per-prompt arrays [N, ...]; each chunk's slice is merged into `rule_params` (e.g.
    Oracle's keep_at_B). `max_new` as in `generate`."""
    rng = jax.random.PRNGKey(0) if rng is None else rng
    for start, chunk, n in prompts_lib.padded_chunks(prompts, batch_size):
      params = rule_params
      if row_params is not None:
        rows = np.minimum(np.arange(start, start + batch_size), start + n - 1)
        params = {**(rule_params or {}), **prompts_lib.place(self.mesh, jax.tree_util.tree_map(
            lambda x: np.asarray(x)[rows], row_params))[0]}
      yield self.generate(target_params, draft_params, chunk, jax.random.fold_in(rng, start), buckets,
                          rule_params=params, max_new=max_new), n


  def generate_continuous(self, target_params, draft_params, prompts: Sequence[Sequence[int]], batch_size: int,
                          rng: Optional[jax.Array] = None, rule_params: Any = None, row_params: Any = None,
                          max_new: Optional[Sequence[int]] = None,
                          buckets: Optional[Sequence[int]] = prompts_lib.DEFAULT_BUCKETS) -> Generation:
    """Host convenience for `continuous`: every prompt through `batch_size` rows in one compiled call, finished rows
    refilled. `row_params` is a pytree of per-prompt arrays [N, ...] (as in generate_in_batches), `max_new` optional
    per-prompt budgets. Returns one Generation over `prompts`, in their order."""
    n = len(prompts)
    padded = list(prompts) + [prompts[-1]] * max(0, batch_size - n)  # Fewer prompts than rows: copies, cut below.
    tokens_NxP, lengths_N = prompts_lib.prepare(padded, self.settings.pad_id, self.shared_vocab_size, buckets)
    max_new_N = None if max_new is None else np.asarray(list(max_new) + [max_new[-1]] * (len(padded) - n), np.int32)
    row_params = None if row_params is None else jax.tree_util.tree_map(
        lambda x: np.asarray(x)[np.minimum(np.arange(len(padded)), n - 1)], row_params)
    rng = jax.random.PRNGKey(0) if rng is None else rng
    _, rng, (tokens_NxP, lengths_N, max_new_N, rule_params, row_params) = prompts_lib.place(
        self.mesh, (), rng, (tokens_NxP, lengths_N, max_new_N, rule_params, row_params))
    gen = self.continuous(target_params, draft_params, tokens_NxP, lengths_N, rng, max_new_N, rule_params,
                          row_params, rows=batch_size)
    return gen if len(padded) == n else jax.tree_util.tree_map(lambda x: x[:n], gen)


def _record_sources(sources_BxT: jax.Array, start_B: jax.Array, committed_B: jax.Array, n_B: jax.Array,
                    kept_BxG: jax.Array) -> jax.Array:
  """Marks the tokens one step committed at positions start..start+committed-1: draft tokens as AGREED or KEPT (an
  arbiter or relaxed rule kept them at a mismatch), the token after them as BONUS (after a fully kept block) or
  CORRECTION."""
  B, G = kept_BxG.shape
  j_1xG1 = jnp.arange(G + 1)[None, :]
  kept_BxG1 = jnp.pad(kept_BxG, ((0, 0), (0, 1)))
  drafted_BxG1 = jnp.where(kept_BxG1, state_lib.KEPT, state_lib.AGREED)
  last_B = jnp.where(n_B == G, state_lib.BONUS, state_lib.CORRECTION)
  source_BxG1 = jnp.where(j_1xG1 < n_B[:, None], drafted_BxG1, last_B[:, None]).astype(jnp.int8)
  T = sources_BxT.shape[1]
  positions_BxG1 = jnp.where(j_1xG1 < committed_B[:, None], start_B[:, None] + j_1xG1, T)  # T: dropped.
  return sources_BxT.at[jnp.arange(B)[:, None], positions_BxG1].set(source_BxG1, mode='drop')
