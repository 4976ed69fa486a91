"""Continuous batching inside the compiled loop: N prompts through B < N rows, finished rows refilled as they free.

Static batching runs each chunk of B prompts until its slowest row finishes, so rows that hit EOS or their budget
early idle while the others decode. Here the loop holds a queue of every prompt. After each decode step, a row that
has finished is harvested (its tokens, length, statistics, records and sources copied to the results at its
prompt's index, so they come back in prompt order) and, while prompts wait, refilled: the next waiting prompts are
written into the rows' token buffers and prefilled into those rows' slots of every KV cache (`prefill`: those rows
alone, together in one call, chunk by chunk up to the longest prompt, through the same cache), and decoding goes on.
With `prefill_ahead` = S > 0 the waiting prompts are prefilled S at a time, in one call, into a cache of S rows of
their own (the stage), and a freed row's refill copies its prompt's staged rows into its slots: most refills free
one row, and one call for S short prompts costs about half of S one-row calls on a CPU (compute-bound) and about
one where calls are bound by reading the weights.
Everything is a fixed shape, so the loop compiles once per (N, P, B), however the rows finish.

A row's computations are those of static batching (the same step at the same batch size, per-row statistics reset
at refill), so deterministic rules give the same tokens, statistics and records per prompt; only the prompts'
prefills run on the refilled rows alone, and a sampling rule draws from the step's key at another row and step.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np

from cospec_jax import sharding
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
  # Prefilling ahead: (target, draft) caches of S rows (`DecodeState.caches`), slot j holding prompt stage_first + j's
  # prefill for the prompts stage_first..stage_end - 1. Else None, and stage_end is N.
  stage: Any
  stage_first: jax.Array  # int32 scalar.
  stage_end: jax.Array  # int32 scalar: prompts next_prompt..stage_end - 1 are ready for a freed row.


def start(state: DecodeState, tokens_NxP: jax.Array, prompt_lengths_N: jax.Array, max_new_N: jax.Array,
          row_params_N: Any, prefill_ahead: int = 0, mesh=None) -> Queue:
  """The queue after rows 0..B-1 took prompts 0..B-1 (`state` holds those rows, N >= B); empty results; with
  `prefill_ahead` = S > 0, an empty stage of S rows (on every `data` shard of `mesh`, as a refill's rows are)."""
  B, T = state.tokens_BxT.shape
  N = tokens_NxP.shape[0]
  zeros_like_N = lambda x: jnp.zeros((N,) + x.shape[1:], x.dtype)  # noqa: E731
  out = Generation(
      jnp.full((N, T), 0, jnp.int32), prompt_lengths_N.astype(jnp.int32), jnp.zeros((N,), jnp.int32),
      jax.tree_util.tree_map(zeros_like_N, state.stats), jax.tree_util.tree_map(zeros_like_N, state.records),
      None if state.n_records_B is None else zeros_like_N(state.n_records_B),
      None if state.sources_BxT is None else zeros_like_N(state.sources_BxT))
  stage = None
  if prefill_ahead:
    stage = sharding.constrain_cache(jax.tree_util.tree_map(
        lambda x: jnp.zeros(x.shape[:1] + (prefill_ahead,) + x.shape[2:], x.dtype), state.caches), mesh,
        rows_on_every_shard=True)
  return Queue(tokens_NxP.astype(jnp.int32), prompt_lengths_N.astype(jnp.int32), max_new_N, row_params_N,
               jnp.arange(B, dtype=jnp.int32), jnp.zeros((B,), bool), jnp.int32(B), out,
               stage, jnp.int32(B), jnp.int32(B if prefill_ahead else N))


def check_rows(n_prompts: int, rows: int) -> None:
  """Continuous batching needs at least as many prompts as rows."""
  if n_prompts < rows:
    raise ValueError(f'continuous batching of {n_prompts} prompts over {rows} rows: give at least as many prompts as '
                     'rows (generate_continuous pads), or decode them in one static call.')


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


# (caches, tokens_KxP, lengths_K) -> caches: K rows of the (target, draft) caches (`DecodeState.caches`) with K
# prompts prefilled into them (a slot of length 0 is unused: whatever it computes is never read).
Prefill = Callable[[Any, jax.Array, jax.Array], Any]


def take_rows(cache, rows_K: jax.Array):
  """Rows `rows_K` of every cache leaf [Y, B, S, C, H] (an index past the batch takes the last row)."""
  return jax.tree_util.tree_map(lambda x: jnp.take(x, jnp.minimum(rows_K, x.shape[1] - 1), axis=1), cache)


def write_rows(cache, rows_K: jax.Array, rows_cache, mesh=None):
  """Writes slot j of `rows_cache` (K rows) into row rows_K[j] of `cache`, leaving the other rows as they are; a row
  index outside the batch (e.g. B) marks an unused slot that writes nothing. Returns the cache.

  With a `mesh` whose rows split over `data`, each device writes the rows it holds into its own block of the cache
  (`jax.shard_map`), from the K slots held on every device: written as one array, a row at a traced index made XLA
  gather the whole cache onto every device for each refill.
  """
  B = jax.tree_util.tree_leaves(cache)[0].shape[1]
  K = jax.tree_util.tree_leaves(rows_cache)[0].shape[1]

  def write_back(x, r, local_K, keep_K):
    """Slot j's row into x's row local_K[j] where keep_K[j], each an in-place update of one row (a scatter copied
    the whole cache)."""
    for j in range(K):
      row = jnp.clip(local_K[j], 0, x.shape[1] - 1)
      new = jnp.where(keep_K[j], r[:, j:j + 1].astype(x.dtype), jax.lax.dynamic_slice_in_dim(x, row, 1, axis=1))
      x = jax.lax.dynamic_update_slice_in_dim(x, new, row, axis=1)
    return x

  if mesh is None or mesh.shape[sharding.DATA] == 1:
    return jax.tree_util.tree_map(lambda x, r: write_back(x, r, rows_K, rows_K < B), cache, rows_cache)

  def write_local(x, r):  # On one device: its block of B / data rows, and every slot's new row (heads as x's).
    first = jax.lax.axis_index(sharding.DATA) * x.shape[1]
    local_K = rows_K - first
    return write_back(x, r, local_K, (local_K >= 0) & (local_K < x.shape[1]) & (rows_K < B))

  def write_sharded(x, r):
    spec = sharding.cache_spec(x.shape[3], mesh)
    return jax.shard_map(write_local, mesh=mesh, in_specs=(spec, sharding.rows_cache_spec(x.shape[3], mesh)),
                         out_specs=spec)(x, r)

  return jax.tree_util.tree_map(write_sharded, cache, rows_cache)


def restage(queue: Queue, prefill: Prefill, mesh=None) -> Queue:
  """Prefills the next S waiting prompts (from `next_prompt` on) into the stage's S rows, in one call."""
  N = queue.tokens_NxP.shape[0]
  S = jax.tree_util.tree_leaves(queue.stage)[0].shape[1]
  wanted_S = queue.next_prompt + jnp.arange(S, dtype=jnp.int32)
  prompts_S = jnp.minimum(wanted_S, N - 1)
  lengths_S = jnp.where(wanted_S < N, queue.prompt_lengths_N[prompts_S], 0)
  stage = prefill(queue.stage, queue.tokens_NxP[prompts_S], lengths_S)
  return queue.replace(stage=sharding.constrain_cache(stage, mesh, rows_on_every_shard=True),
                       stage_first=queue.next_prompt, stage_end=jnp.minimum(queue.next_prompt + S, N))


def refill(state: DecodeState, queue: Queue, prefill: Prefill, pad_id: int, k: int,
           mesh=None) -> tuple[DecodeState, Queue]:
  """Gives the next ready prompts (`Queue.stage_end`) to the first free rows, up to `k` of them (call it only when
  both exist): resets each taken row (tokens, length, budget, statistics, records, sources, rule parameters) and
  writes their prompts into their rows of every cache, copied from the stage or, with none, prefilled in one batched
  call (`prefill` on those rows alone; a slot with no row to fill has row index B and length 0). Returns
  (state, queue).

  One call for all the rows: refilling them one by one costs a prefill call each, and a while loop over the freed
  rows carried the caches, which XLA:CPU copied whole on every turnover.
  """
  B, T = state.tokens_BxT.shape
  N, P = queue.tokens_NxP.shape
  rank_B = (jnp.cumsum(queue.free_B) - 1).astype(jnp.int32)  # Each free row's place among the free rows.
  count = jnp.minimum(jnp.minimum(jnp.sum(queue.free_B), queue.stage_end - queue.next_prompt), k).astype(jnp.int32)
  take_B = queue.free_B & (rank_B < count)
  prompt_B = jnp.where(take_B, queue.next_prompt + rank_B, queue.prompt_B)  # In order: row by row, prompt by prompt.
  at_prompt = lambda x_N: x_N[jnp.minimum(prompt_B, N - 1)]  # noqa: E731  (each row's new prompt's entry)
  take = lambda new, old_B: jnp.where(take_B.reshape((B,) + (1,) * (old_B.ndim - 1)), new, old_B)  # noqa: E731
  zero = lambda x: take(jnp.zeros_like(x), x)  # noqa: E731
  tokens_BxT = jnp.full((B, T), pad_id, jnp.int32).at[:, :P].set(at_prompt(queue.tokens_NxP))
  lengths_B = at_prompt(queue.prompt_lengths_N)
  state = state.replace(
      tokens_BxT=take(tokens_BxT, state.tokens_BxT), lengths_B=take(lengths_B, state.lengths_B),
      done_B=take(False, state.done_B), prompt_lengths_B=take(lengths_B, state.prompt_lengths_B),
      max_new_B=take(at_prompt(queue.max_new_N), state.max_new_B),
      stats=jax.tree_util.tree_map(zero, state.stats), records=jax.tree_util.tree_map(zero, state.records),
      n_records_B=None if state.n_records_B is None else zero(state.n_records_B),
      sources_BxT=None if state.sources_BxT is None else take(jnp.int8(state_lib.PROMPT), state.sources_BxT),
      row_params=jax.tree_util.tree_map(lambda x_N, x_B: take(at_prompt(x_N), x_B), queue.row_params_N,
                                        state.row_params))
  # The write's k slots: the taken rows in order (their prompts next_prompt, next_prompt + 1, ...), then unused.
  rows_K = jnp.nonzero(take_B, size=k, fill_value=B)[0].astype(jnp.int32)
  prompts_K = jnp.minimum(queue.next_prompt + jnp.arange(k, dtype=jnp.int32), N - 1)
  if queue.stage is None:
    lengths_K = jnp.where(jnp.arange(k) < count, queue.prompt_lengths_N[prompts_K], 0)
    rows_caches = prefill(take_rows(state.caches, rows_K), queue.tokens_NxP[prompts_K], lengths_K)
  else:
    rows_caches = take_rows(queue.stage, prompts_K - queue.stage_first)
  state = state.with_caches(write_rows(state.caches, rows_K, rows_caches, mesh))
  queue = queue.replace(prompt_B=prompt_B, free_B=queue.free_B & ~take_B, next_prompt=queue.next_prompt + count)
  return state, queue


def most_refills(rows: int, refills_per_step: int = 0, prefill_ahead: int = 0) -> int:
  """The most rows one step refills: `refills_per_step` (0: all `rows`), and no more than the stage holds."""
  return min(refills_per_step or rows, prefill_ahead or rows, rows)


def refill_sizes(rows: int, refills_per_step: int = 0, prefill_ahead: int = 0) -> tuple[int, ...]:
  """The refill sizes the loop compiles, 1, 2, 4, ... up to `most_refills`: each step refills the smallest size that
  holds its freed rows, so one freed row costs a one-row prefill call (or copy), and m freed rows one of fewer than
  2m rows, not m."""
  k = most_refills(rows, refills_per_step, prefill_ahead)
  return tuple(sorted({2 ** i for i in range(k.bit_length()) if 2 ** i < k} | {k}))


def loop(state: DecodeState, queue: Queue, step: Callable[[DecodeState], DecodeState], prefill: Prefill,
         pad_id: int, refills_per_step: int = 0, mesh=None) -> Generation:
  """Decodes until every prompt is done: after each step, harvests finished rows and refills the free rows while
  prompts wait (up to `most_refills`; the rest on the next step), in one prefill call (or copy from the stage) of
  the smallest size in `refill_sizes` that holds them; prefilling ahead, the stage is refilled first when it holds
  fewer prompts than the step takes (a step with nothing to do pays a predicate for the harvest, one per size and
  one for the stage). Returns the results in prompt order."""
  N = queue.tokens_NxP.shape[0]
  S = 0 if queue.stage is None else jax.tree_util.tree_leaves(queue.stage)[0].shape[1]
  sizes = refill_sizes(state.tokens_BxT.shape[0], refills_per_step, S)
  branches = [lambda sq, k=k: refill(*sq, prefill, pad_id, k, mesh) for k in sizes]

  def body(carry):
    state, queue = carry
    state = step(state)
    finished = jnp.any(state.done_B & ~queue.free_B)
    queue = jax.lax.cond(finished, harvest, lambda state, queue: queue, state, queue)
    wanted = jnp.minimum(jnp.sum(queue.free_B), N - queue.next_prompt)  # Rows to refill now (0: nothing to do).
    if S:  # The stage first, if it holds fewer than this step's refill (the prompts it holds are prefilled again).
      short = (wanted > 0) & (queue.stage_end - queue.next_prompt < jnp.minimum(wanted, sizes[-1]))
      queue = jax.lax.cond(short, lambda q: restage(q, prefill, mesh), lambda q: q, queue)
    size = jnp.searchsorted(jnp.asarray(sizes), jnp.minimum(wanted, sizes[-1]))  # The smallest that holds them.
    # One cond per size, each either refilling or passing the state through, at most one of them taken: a switch
    # (or any conditional) with two branches that write the caches makes XLA copy every cache whole on each refill.
    for i, branch in enumerate(branches):
      state, queue = jax.lax.cond((wanted > 0) & (size == i), branch, lambda sq: sq, (state, queue))
    return state, queue

  _, queue = jax.lax.while_loop(lambda carry: jnp.any(~carry[0].done_B), body, (state, queue))
  return queue.out


def schedule_steps(steps_N: np.ndarray, batch_size: int, refills_per_step: int, prefill_ahead: int = 0) -> dict:
  """Decode steps of a workload whose prompt i needs steps_N[i] steps (answer tokens for target-only decoding,
  target calls for SPD), counted, not timed. static: the prompts in consecutive chunks of `batch_size` rows, each
  chunk for its longest prompt. continuous: first-come refilling as decoding/continuous.py does it: after each step
  up to `most_refills` freed rows take the next waiting prompts, which decode from the next step on;
  until the last prompt is done, each step's refilled rows prefilled in one call of the smallest `refill_sizes`
  that holds them. Returns {'static': steps, 'continuous': steps, 'refills': prompts started in a freed row,
  'refill_calls': {rows of a refill call: how many such calls}}."""
  steps_N = np.asarray(steps_N, np.int64)
  N = len(steps_N)
  if N < batch_size or np.any(steps_N < 1):
    raise ValueError(f'schedule_steps needs at least batch_size={batch_size} prompts of at least one step each; '
                     f'got {N} prompts, fewest steps {steps_N.min() if N else None}.')
  static = int(sum(steps_N[i:i + batch_size].max() for i in range(0, N, batch_size)))
  left_B = steps_N[:batch_size].copy()
  sizes = refill_sizes(batch_size, refills_per_step, prefill_ahead)
  waiting, steps, calls = batch_size, 0, {}
  while np.any(left_B > 0):
    steps += 1
    left_B = np.maximum(left_B - 1, 0)
    rows = np.flatnonzero(left_B == 0)[:min(sizes[-1], N - waiting)]
    if len(rows):
      left_B[rows] = steps_N[waiting:waiting + len(rows)]
      waiting += len(rows)
      size = min(k for k in sizes if k >= len(rows))
      calls[size] = calls.get(size, 0) + 1
  return dict(static=static, continuous=steps, refills=waiting - batch_size, refill_calls=dict(sorted(calls.items())))
