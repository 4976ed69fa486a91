"""How a token is drawn from logits: greedy, or random sampling with temperature, top-k and top-p.

Each method is a small frozen (hashable, jit-static) dataclass with two methods: `sample` draws tokens and `probs`
gives the distribution `sample` draws from. Speculative rejection sampling applies the same `probs` to the draft's and
the target's logits, so the target distribution it reproduces is the warped one.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


def entropy(logp_xV: jax.Array) -> jax.Array:
  """Entropy (nats) of distributions given as log-probabilities; -inf entries (warped-out tokens) contribute 0."""
  return -jnp.sum(jnp.exp(logp_xV) * jnp.where(jnp.isfinite(logp_xV), logp_xV, 0.0), axis=-1)


def warp_logits(logits_xV: jax.Array, temperature: float, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """Returns temperature-scaled logits with tokens outside the top-k / top-p nucleus set to -inf.

  Ties at the top-k or top-p boundary are all kept, so the result depends on values only, never on sort order.
  """
  logits_xV = logits_xV.astype(jnp.float32) / temperature
  if top_k:
    kth_x1 = jax.lax.top_k(logits_xV, min(top_k, logits_xV.shape[-1]))[0][..., -1:]
    logits_xV = jnp.where(logits_xV >= kth_x1, logits_xV, -jnp.inf)
  if top_p < 1.0:
    sorted_xV = jnp.sort(logits_xV, axis=-1)[..., ::-1]
    probs_xV = jax.nn.softmax(sorted_xV, axis=-1)
    mass_before_xV = jnp.cumsum(probs_xV, axis=-1) - probs_xV
    # The smallest logit still inside the nucleus (the first token is always inside).
    cutoff_x1 = jnp.min(jnp.where(mass_before_xV < top_p, sorted_xV, jnp.inf), axis=-1, keepdims=True)
    logits_xV = jnp.where(logits_xV >= cutoff_x1, logits_xV, -jnp.inf)
  return logits_xV


@dataclasses.dataclass(frozen=True)
class Greedy:
  """Always the most likely token."""

  def sample(self, logits_xV: jax.Array, rng: jax.Array) -> jax.Array:
    """Returns int32 tokens shaped like `logits_xV` without its last axis."""
    del rng
    return jnp.argmax(logits_xV, axis=-1).astype(jnp.int32)

  def probs(self, logits_xV: jax.Array) -> jax.Array:
    """Returns the one-hot float32 distribution on the argmax."""
    return jax.nn.one_hot(jnp.argmax(logits_xV, axis=-1), logits_xV.shape[-1], dtype=jnp.float32)


@dataclasses.dataclass(frozen=True)
class Sampling:
  """Ancestral sampling from softmax(logits / temperature), restricted to the top-k and the top-p nucleus."""

  temperature: float = 1.0  # > 0. For temperature 0 use Greedy.
  top_k: int = 0  # Keep the k most likely tokens; 0 keeps all.
  top_p: float = 1.0  # Keep the smallest set of tokens holding this much probability; 1.0 keeps all.

  def __post_init__(self):
    if not self.temperature > 0:
      raise ValueError(f'Sampling(temperature={self.temperature}): temperature must be > 0; use Greedy() for '
                       'temperature 0.')
    if self.top_k < 0:
      raise ValueError(f'Sampling(top_k={self.top_k}) must be >= 0 (0 disables top-k).')
    if not 0.0 < self.top_p <= 1.0:
      raise ValueError(f'Sampling(top_p={self.top_p}) must be in (0, 1] (1.0 disables top-p).')

  def logits(self, logits_xV: jax.Array) -> jax.Array:
    return warp_logits(logits_xV, self.temperature, self.top_k, self.top_p)

  def sample(self, logits_xV: jax.Array, rng: jax.Array) -> jax.Array:
    """Returns int32 tokens shaped like `logits_xV` without its last axis."""
    return jax.random.categorical(rng, self.logits(logits_xV), axis=-1).astype(jnp.int32)

  def probs(self, logits_xV: jax.Array) -> jax.Array:
    """Returns the float32 distribution `sample` draws from."""
    return jax.nn.softmax(self.logits(logits_xV), axis=-1)


Sampler = Greedy | Sampling
