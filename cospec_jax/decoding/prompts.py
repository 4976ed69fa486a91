"""Prompts in and out of the fixed shapes the compiled loop wants: right padding to a few bucket lengths."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from cospec_jax import sharding

# Prompt lengths are padded up to one of these, so a loop compiles once per bucket, not once per prompt length:
# powers of two up to 256, then four per octave (256, 320, 384, 448, 512, 640, ...), so a prompt is padded by at
# most a quarter (an 8-shot GSM8K prompt of ~1,100 tokens to 1280, not 2048) for a few more compiles.
DEFAULT_BUCKETS = (16, 32, 64, 128) + tuple(2**k + i * 2**(k - 2) for k in range(8, 15) for i in range(4)) + (32768,)


def bucket_length(length: int, buckets: Sequence[int] = DEFAULT_BUCKETS) -> int:
  """The smallest bucket >= length (or `length` itself past the largest bucket)."""
  for b in sorted(buckets):
    if b >= length:
      return b
  return length


def pad_prompts(prompts: Sequence[Sequence[int]], pad_id: int,
                buckets: Optional[Sequence[int]] = DEFAULT_BUCKETS) -> tuple[np.ndarray, np.ndarray]:
  """Right-pads token lists into one array.

  Returns:
    tokens_BxP: int32, each prompt followed by pad_id; P is the bucket holding the longest prompt
      (exactly the longest prompt when `buckets` is None).
    lengths_B: int32 prompt lengths.
  """
  if not len(prompts):
    raise ValueError('No prompts given: pass a non-empty list of token lists.')
  lengths_B = np.array([len(p) for p in prompts], np.int32)
  if lengths_B.min() < 1:
    raise ValueError(f'Prompt {int(lengths_B.argmin())} is empty; every prompt needs at least one token '
                     '(e.g. BOS).')
  longest = int(lengths_B.max())
  P = longest if buckets is None else bucket_length(longest, buckets)
  tokens_BxP = np.full((len(prompts), P), pad_id, np.int32)
  for b, p in enumerate(prompts):
    tokens_BxP[b, :len(p)] = p
  return tokens_BxP, lengths_B


def check_buffer(prompt_length: int, buffer_length: int, max_len: Optional[int]) -> None:
  """Raises ValueError if the padded prompt plus the generation does not fit in `max_len` positions."""
  if max_len is not None and buffer_length > max_len:
    raise ValueError(
        f'Prompt length {prompt_length} (padded) plus max_new_tokens and one drafted block needs a cache of '
        f'{buffer_length} positions, more than max_len={max_len}. Shorten the prompt, lower max_new_tokens, or '
        'raise max_len.')


def check_prompts(tokens_BxP: np.ndarray, lengths_B: np.ndarray, vocab_size: int) -> None:
  """Raises ValueError naming the problem if the prompts cannot be decoded as given."""
  tokens_BxP, lengths_B = np.asarray(tokens_BxP), np.asarray(lengths_B)
  if tokens_BxP.ndim != 2 or lengths_B.shape != tokens_BxP.shape[:1]:
    raise ValueError(f'tokens must be [B, P] and lengths [B]; got {tokens_BxP.shape} and {lengths_B.shape}.')
  if lengths_B.min() < 1 or lengths_B.max() > tokens_BxP.shape[1]:
    raise ValueError(f'Prompt lengths must be in [1, {tokens_BxP.shape[1]}]; got {lengths_B.tolist()}.')
  bad = (tokens_BxP < 0) | (tokens_BxP >= vocab_size)
  valid = np.arange(tokens_BxP.shape[1])[None] < lengths_B[:, None]
  if np.any(bad & valid):
    b, i = np.argwhere(bad & valid)[0]
    raise ValueError(f'Prompt {b} has token {tokens_BxP[b, i]} at position {i}, outside the vocabulary '
                     f'[0, {vocab_size}); was it tokenized for another model?')


def prepare(prompts: Sequence[Sequence[int]], pad_id: int, vocab_size: int,
            buckets: Optional[Sequence[int]] = DEFAULT_BUCKETS) -> tuple[np.ndarray, np.ndarray]:
  """pad_prompts followed by check_prompts: returns (tokens_BxP, lengths_B) ready for a decoder."""
  tokens_BxP, lengths_B = pad_prompts(prompts, pad_id, buckets)
  check_prompts(tokens_BxP, lengths_B, vocab_size)
  return tokens_BxP, lengths_B


def call_inputs(prompts: Sequence[Sequence[int]], pad_id: int, vocab_size: int, buckets: Optional[Sequence[int]],
                max_new: int, mesh, rng: Optional[jax.Array] = None, shared: Any = None
                ) -> tuple[tuple[Any, Any, Any], jax.Array, Any]:
  """A decoder's `generate` inputs, placed (`place`): ((tokens_BxP, lengths_B, max_new_B), rng, shared), with every
  row's budget `max_new` and the default key PRNGKey(0) when `rng` is None."""
  tokens_BxP, lengths_B = prepare(prompts, pad_id, vocab_size, buckets)
  max_new_B = np.full(len(lengths_B), max_new, np.int32)
  rng = jax.random.PRNGKey(0) if rng is None else rng
  return place(mesh, (tokens_BxP, lengths_B, max_new_B), rng, shared)


def padded_chunks(prompts: Sequence[Sequence[int]], batch_size: int):
  """Yields (start, chunk, n): consecutive `batch_size` prompts from index `start`, a short last chunk padded with
  copies of its last prompt (so every call has the same shape); only the first n rows are real."""
  for start in range(0, len(prompts), batch_size):
    chunk = list(prompts[start:start + batch_size])
    n = len(chunk)
    yield start, chunk + [chunk[-1]] * (batch_size - n), n


def place(mesh, rows: Any, rng: Optional[jax.Array] = None, shared: Any = None) -> tuple[Any, Any, Any]:
  """Host inputs of one compiled call: `rows` (a pytree of [B, ...] arrays) split over the mesh's `data` axis, `rng`
  and `shared` (e.g. a rule's parameters) replicated on it; without a mesh, plain device arrays. In a multi-process
  run every process passes the same values. Returns (rows, rng, shared)."""
  if mesh is None:
    return jax.tree_util.tree_map(jnp.asarray, rows), rng, shared
  rows = jax.tree_util.tree_map(lambda x: sharding.put(x, sharding.batch_sharding(mesh)), rows)
  rng = None if rng is None else sharding.put(rng, NamedSharding(mesh, PartitionSpec()))
  return rows, rng, None if shared is None else sharding.on_mesh(shared, mesh)
