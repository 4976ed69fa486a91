"""The decode state shared by autoregressive and speculative generation, and the one function that commits tokens.

B rows, T buffer slots (prompt + generated + slack for one drafted block), C candidate tokens in one commit.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from cospec_jax import sharding

# Where each committed token came from (Generation.sources_BxT), for the collaboration trace.
PROMPT, AGREED, KEPT, CORRECTION, BONUS, TARGET = range(6)


@flax.struct.dataclass
class DecodeStats:
  """Per-row counters, accumulated only while a row is active."""

  target_calls_B: jax.Array  # int32: target forward passes (prefill excluded).
  draft_calls_B: jax.Array  # int32: draft forward passes (prefill excluded).
  proposed_B: jax.Array  # int32: draft tokens put to the target.
  accepted_B: jax.Array  # int32: draft tokens committed.
  mismatches_B: jax.Array  # int32: positions where the base rule rejected the draft token (scan reached).
  kept_at_mismatch_B: jax.Array  # int32: of those, draft tokens an arbiter kept anyway.
  generated_B: jax.Array  # int32: tokens committed after the prompt.

  @classmethod
  def zeros(cls, batch_size: int) -> 'DecodeStats':
    z = jnp.zeros((batch_size,), jnp.int32)
    return cls(z, z, z, z, z, z, z)

  def add(self, active_B: jax.Array, **counts_B: jax.Array) -> 'DecodeStats':
    """Adds each `counts_B[name]` to the rows where `active_B`."""
    updates = {f'{k}_B': getattr(self, f'{k}_B') + jnp.where(active_B, v, 0).astype(jnp.int32)
               for k, v in counts_B.items()}
    return self.replace(**updates)


@flax.struct.dataclass
class DecodeState:
  """Everything one generation carries through its `lax.while_loop`."""

  tokens_BxT: jax.Array  # int32: prompt then committed tokens, pad after `lengths_B`.
  lengths_B: jax.Array  # int32: committed tokens per row (prompt included).
  done_B: jax.Array  # bool: the row hit EOS or its token budget.
  target_cache: Any  # transformer.Cache of the target; valid below lengths_B - 1.
  draft_cache: Any  # transformer.Cache of the draft (None for autoregressive decoding).
  rng: jax.Array  # PRNG key, split once per step.
  stats: DecodeStats
  records: Any = None  # A rule's per-decision records, [B, max_decisions, ...] buffers (None if not kept).
  n_records_B: Any = None  # int32: decisions recorded per row (may exceed max_decisions; the rest are dropped).
  sources_BxT: Any = None  # int8: where each committed token came from (PROMPT, AGREED, ...); speculative only.
  prompt_lengths_B: Any = None  # int32: each row's prompt length (its answer starts there).
  max_new_B: Any = None  # int32: each row's token budget.
  row_params: Any = None  # Per-row rule parameters ([B, ...] leaves) merged into rule_params; continuous mode only.

  @property
  def caches(self) -> tuple[Any, Any]:
    """(target_cache, draft_cache): what a prefill writes."""
    return self.target_cache, self.draft_cache

  def with_caches(self, caches: tuple[Any, Any]) -> 'DecodeState':
    return self.replace(target_cache=caches[0], draft_cache=caches[1])

  def constrain(self, mesh) -> 'DecodeState':
    """Inside jit: rows over the mesh's `data` axis, KV heads over `model` (no-op without a mesh)."""
    if mesh is None:
      return self
    names = ('tokens_BxT', 'lengths_B', 'done_B', 'stats', 'records', 'n_records_B', 'sources_BxT',
             'prompt_lengths_B', 'max_new_B', 'row_params')
    rows = sharding.constrain_batch(tuple(getattr(self, name) for name in names), mesh)
    return self.replace(**dict(zip(names, rows)),
                        target_cache=sharding.constrain_cache(self.target_cache, mesh),
                        draft_cache=sharding.constrain_cache(self.draft_cache, mesh))


@flax.struct.dataclass
class Generation:
  """The result of one generation. `completions()` gives each row's new tokens on the host."""

  tokens_BxT: jax.Array  # int32: prompt + generated tokens, pad after `lengths_B`.
  prompt_lengths_B: jax.Array  # int32.
  lengths_B: jax.Array  # int32: prompt + generated.
  stats: DecodeStats
  records: Any = None  # As DecodeState.records; its `mask_BxN` marks filled slots.
  n_records_B: Any = None
  sources_BxT: Any = None  # As DecodeState.sources_BxT (None for one-model decoding).

  def completions(self) -> list[np.ndarray]:
    """Returns, per row, the generated tokens (EOS included when hit) as a numpy int array."""
    tokens, starts, ends = sharding.fetch((self.tokens_BxT, self.prompt_lengths_B, self.lengths_B))
    return [tokens[b, starts[b]:ends[b]] for b in range(tokens.shape[0])]

  def completion_sources(self) -> list[np.ndarray]:
    """Per row, where each token of `completions()` came from (state.PROMPT, AGREED, KEPT, CORRECTION, BONUS, or
    TARGET for one-model decoding)."""
    starts, ends = sharding.fetch((self.prompt_lengths_B, self.lengths_B))
    if self.sources_BxT is None:
      return [np.full(ends[b] - starts[b], TARGET, np.int8) for b in range(len(starts))]
    sources = sharding.fetch(self.sources_BxT)
    return [sources[b, starts[b]:ends[b]] for b in range(len(starts))]


def commit(state: DecodeState, block_BxC: jax.Array, n_new_B: jax.Array, max_new_B: jax.Array,
           prompt_lengths_B: jax.Array, eos_ids: Sequence[int], pad_id: int) -> tuple[DecodeState, jax.Array]:
  """Appends the first `n_new_B` tokens of `block_BxC` to each active row, stopping at EOS and the token budget.

  Returns the new state and the number of tokens actually committed per row (0 for done rows).
  """
  B, C = block_BxC.shape
  j_1xC = jnp.arange(C)[None, :]
  n_B = jnp.minimum(n_new_B, max_new_B - (state.lengths_B - prompt_lengths_B))
  hit_eos_B = jnp.zeros((B,), bool)
  if eos_ids:
    is_eos_BxC = jnp.isin(block_BxC, jnp.asarray(eos_ids, jnp.int32)) & (j_1xC < n_B[:, None])
    hit_eos_B = jnp.any(is_eos_BxC, axis=1)
    n_B = jnp.where(hit_eos_B, jnp.argmax(is_eos_BxC, axis=1) + 1, n_B)
  n_B = jnp.where(state.done_B, 0, n_B).astype(jnp.int32)
  written_BxC = jnp.where(j_1xC < n_B[:, None], block_BxC, pad_id)
  rows_Bx1 = jnp.arange(B)[:, None]
  tokens_BxT = state.tokens_BxT.at[rows_Bx1, state.lengths_B[:, None] + j_1xC].set(written_BxC, mode='drop')
  lengths_B = state.lengths_B + n_B
  done_B = state.done_B | hit_eos_B | (lengths_B - prompt_lengths_B >= max_new_B)
  return state.replace(tokens_BxT=tokens_BxT, lengths_B=lengths_B, done_B=done_B), n_B


def gather_B(x_BxT: jax.Array, index_B: jax.Array) -> jax.Array:
  """Returns x_BxT[b, index_B[b]] for each row (also for trailing axes: x_BxTx...)."""
  index = index_B.reshape(index_B.shape + (1,) * (x_BxT.ndim - 1))
  return jnp.take_along_axis(x_BxT, index, axis=1)[:, 0]


def append_records(records, n_records_B: jax.Array, block_record, active_B: jax.Array):
  """Appends the positions of `block_record` ([B, G, ...] with a bool `mask_BxG`) where mask & active to each row's
  [B, N, ...] buffers at its count; entries past N are dropped. Returns (records, n_records_B).

  The buffers' own mask (`mask_BxG` field, there [B, N]) marks the filled slots.
  """
  mask_BxG = block_record.mask_BxG & active_B[:, None]
  N = records.mask_BxG.shape[1]
  slot_BxG = jnp.where(mask_BxG, n_records_B[:, None] + jnp.cumsum(mask_BxG, axis=1) - 1, N)
  rows_BxG = jnp.broadcast_to(jnp.arange(mask_BxG.shape[0])[:, None], mask_BxG.shape)
  block_record = block_record.replace(mask_BxG=mask_BxG)
  records = jax.tree_util.tree_map(lambda buf, x: buf.at[rows_BxG, slot_BxG].set(x.astype(buf.dtype), mode='drop'),
                                   records, block_record)
  return records, n_records_B + jnp.sum(mask_BxG, axis=1).astype(jnp.int32)
