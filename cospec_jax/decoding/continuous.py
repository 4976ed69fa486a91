"""Continuous batching inside the compiled loop: N prompts through B < N rows, a finished row refilled at once.

Static batching runs each chunk of B prompts until its slowest row finishes, so rows that hit EOS or their budget
early idle while the others decode. Here the loop holds a queue of every prompt. After each decode step, a row that
has finished is harvested (its tokens, length, statistics, records and sources copied to the results at its
prompt's index, so they come back in prompt order) and, while prompts wait, refilled: the next waiting prompt is
written into the row's token buffer and prefilled into that row's slot of every KV cache (`prefill_row`: the row
alone, chunk by chunk, through the same cache), and decoding goes on. Everything is a fixed shape, so the loop
compiles once per (N, P, B), however the rows finish.

A row's computations are those of static batching (the same step at the same batch size, per-row statistics reset
at refill), so deterministic rules give the same tokens, statistics and records per prompt; only the prompt's
prefill runs on its own row, and a sampling rule draws from the step's key at another row and step.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp

from cospec_jax.decoding import state as state_lib
from cospec_jax.decoding.state import DecodeState, Generation


@flax.struct.dataclass
class Queue:
  """The prompts of one continuous-batching call and where they stand. N prompts, B rows."""

  tokens_NxP: jax.Array  # int32: every prompt, right-padded.
  prompt_lengths_N: jax.Array  # int32.
  max_new_N: jax.Array  # int32: per-prompt token budgets.
  row_params_N: Any  # Per-prompt rule parameters ([N, ...] leaves) or None.
  prompt_B: jax.Array  # int32: the prompt each row holds (its last one, once the row is free).
  free_B: jax.Array  # bool: the row's result is harvested and no prompt has taken its place.
  next_prompt: jax.Array  # int32 scalar: the first prompt no row has taken yet (N when none waits).
  out: Generation  # Results in prompt order: [N, ...] buffers, filled as rows are harvested.


def start(state: DecodeState, tokens_NxP: jax.Array, prompt_lengths_N: jax.Array, max_new_N: jax.Array,
          row_params_N: Any) -> Queue:
  """The queue after rows 0..B-1 took prompts 0..B-1 (`state` holds those rows, N >= B); empty results."""
  B, T = state.tokens_BxT.shape
  N = tokens_NxP.shape[0]
  zeros_like_N = lambda x: jnp.zeros((N,) + x.shape[1:], x.dtype)  # noqa: E731
  out = Generation(
      jnp.full((N, T), 0, jnp.int32), prompt_lengths_N.astype(jnp.int32), jnp.zeros((N,), jnp.int32),
      jax.tree_util.tree_map(zeros_like_N, state.stats), jax.tree_util.tree_map(zeros_like_N, state.records),
      None if state.n_records_B is None else zeros_like_N(state.n_records_B),
      None if state.sources_BxT is None else zeros_like_N(state.sources_BxT))
  return Queue(tokens_NxP.astype(jnp.int32), prompt_lengths_N.astype(jnp.int32), max_new_N, row_params_N,
               jnp.arange(B, dtype=jnp.int32), jnp.zeros((B,), bool), jnp.int32(B), out)


def first_rows(tree_N: Any, batch_size: int) -> Any:
  """The leading `batch_size` entries of every [N, ...] leaf (the prompts the rows start with)."""
  return jax.tree_util.tree_map(lambda x: x[:batch_size], tree_N)


def harvest(state: DecodeState, queue: Queue) -> Queue:
  """Copies every finished, not yet harvested row to the results at its prompt's index and marks it free."""
  N = queue.tokens_NxP.shape[0]
  finished_B = state.done_B & ~queue.free_B
  index_B = jnp.where(finished_B, queue.prompt_B, N)  # N: dropped.
  put = lambda buf, rows: None if buf is None else buf.at[index_B].set(rows.astype(buf.dtype), mode='drop')  # noqa
  out = queue.out
  out = out.replace(
      tokens_BxT=put(out.tokens_BxT, state.tokens_BxT), lengths_B=put(out.lengths_B, state.lengths_B),
      stats=jax.tree_util.tree_map(put, out.stats, state.stats),
      records=jax.tree_util.tree_map(put, out.records, state.records),
      n_records_B=put(out.n_records_B, state.n_records_B), sources_BxT=put(out.sources_BxT, state.sources_BxT))
  return queue.replace(out=out, free_B=queue.free_B | finished_B)


def refill(state: DecodeState, queue: Queue, prefill_row: Callable[[DecodeState, jax.Array, jax.Array], DecodeState],
           pad_id: int) -> tuple[DecodeState, Queue]:
  """Gives the waiting prompts, in order, to the free rows, in row order: resets each taken row (tokens, length,
  budget, statistics, records, sources, rule parameters) and prefills its caches (`prefill_row(state, row,
  tokens_1xP)`). Returns (state, queue)."""
  N, P = queue.tokens_NxP.shape
  B, T = state.tokens_BxT.shape
  prompt_B = queue.next_prompt + jnp.cumsum(queue.free_B.astype(jnp.int32)) - 1
  take_B = queue.free_B & (prompt_B < N)
  prompt_B = jnp.where(take_B, prompt_B, queue.prompt_B)
  take = lambda new_B, old_B: jnp.where(take_B.reshape((B,) + (1,) * (old_B.ndim - 1)), new_B, old_B)  # noqa
  gather = lambda x_N: x_N[prompt_B]  # noqa: E731
  tokens_BxT = jnp.full((B, T), pad_id, jnp.int32).at[:, :P].set(gather(queue.tokens_NxP))
  zero = lambda x: take(jnp.zeros_like(x), x)  # noqa: E731
  state = state.replace(
      tokens_BxT=take(tokens_BxT, state.tokens_BxT), lengths_B=take(gather(queue.prompt_lengths_N), state.lengths_B),
      done_B=take(False, state.done_B), prompt_lengths_B=take(gather(queue.prompt_lengths_N), state.prompt_lengths_B),
      max_new_B=take(gather(queue.max_new_N), state.max_new_B),
      stats=jax.tree_util.tree_map(zero, state.stats), records=jax.tree_util.tree_map(zero, state.records),
      n_records_B=None if state.n_records_B is None else zero(state.n_records_B),
      sources_BxT=None if state.sources_BxT is None else take(jnp.int8(state_lib.PROMPT), state.sources_BxT),
      row_params=jax.tree_util.tree_map(lambda x_N, x_B: take(gather(x_N), x_B), queue.row_params_N,
                                        state.row_params))

  def prefill_next(carry):
    state, pending_B = carry
    row = jnp.argmax(pending_B).astype(jnp.int32)
    tokens_1xP = jax.lax.dynamic_slice_in_dim(queue.tokens_NxP, prompt_B[row], 1, axis=0)
    return prefill_row(state, row, tokens_1xP), pending_B.at[row].set(False)

  state, _ = jax.lax.while_loop(lambda carry: jnp.any(carry[1]), prefill_next, (state, take_B))
  queue = queue.replace(prompt_B=prompt_B, free_B=queue.free_B & ~take_B,
                        next_prompt=queue.next_prompt + jnp.sum(take_B).astype(jnp.int32))
  return state, queue


def loop(state: DecodeState, queue: Queue, step: Callable[[DecodeState], DecodeState],
         prefill_row: Callable[[DecodeState, jax.Array, jax.Array], DecodeState], pad_id: int) -> Generation:
  """Decodes until every prompt is done: after each step, harvests finished rows and refills them (skipped, one
  predicate, when no row finished). Returns the results in prompt order."""

  def body(carry):
    state, queue = carry
    state = step(state)

    def turnover(carry):
      state, queue = carry
      return refill(state, harvest(state, queue), prefill_row, pad_id)

    return jax.lax.cond(jnp.any(state.done_B & ~queue.free_B), turnover, lambda carry: carry, (state, queue))

  _, queue = jax.lax.while_loop(lambda carry: jnp.any(~carry[0].done_B), body, (state, queue))
  return queue.out
