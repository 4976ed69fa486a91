"""Acceptance rules: given a drafted block and the target's scores for it, how many draft tokens to keep.

Every rule is a small frozen dataclass with the same interface:

  rule.sampler                                          how the draft proposes (Greedy or Sampling)
  rule(draft_tokens_BxG, draft_logits_BxGxV, target_logits_BxG1xV, rng) -> Verdict

`target_logits_BxG1xV[:, i]` is the target's prediction for the position of `draft_tokens_BxG[:, i]` (given the
committed prefix and draft tokens before i); the last one, `[:, G]`, predicts the token after a fully kept block.
A Verdict keeps the first `n_accepted_B` draft tokens and appends `next_token_B` after them. A new rule is one class
here plus one entry in RULES.
"""

from __future__ import annotations

import dataclasses

import flax
import jax
import jax.numpy as jnp

from cospec_jax.decoding.sampling import Greedy, Sampling


@flax.struct.dataclass
class Verdict:
  """What a rule keeps of one drafted block."""

  n_accepted_B: jax.Array  # int32 in [0, G]: leading draft tokens kept.
  next_token_B: jax.Array  # int32: the token committed after them (a correction, or the bonus token).


def _take_B(x_BxN: jax.Array, index_B: jax.Array) -> jax.Array:
  return jnp.take_along_axis(x_BxN, index_B[:, None], axis=1)[:, 0]


def leading_true_count(ok_BxG: jax.Array) -> jax.Array:
  """Length of the all-True prefix of each row: the number of draft tokens a left-to-right scan keeps."""
  return jnp.sum(jnp.cumprod(ok_BxG.astype(jnp.int32), axis=1), axis=1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class Exact:
  """Greedy speculative decoding: keep draft tokens while they equal the target's argmax. Lossless."""

  sampler: Greedy = Greedy()

  def __call__(self, draft_tokens_BxG, draft_logits_BxGxV, target_logits_BxG1xV, rng) -> Verdict:
    del draft_logits_BxGxV, rng
    target_tokens_BxG1 = jnp.argmax(target_logits_BxG1xV, axis=-1).astype(jnp.int32)
    n_B = leading_true_count(draft_tokens_BxG == target_tokens_BxG1[:, :-1])
    return Verdict(n_B, _take_B(target_tokens_BxG1, n_B))


@dataclasses.dataclass(frozen=True)
class RejectionSampling:
  """Speculative sampling (Leviathan et al. 2023; Chen et al. 2023). Lossless for the warped target distribution.

  Keeps draft token x with probability min(1, p(x) / q(x)); at the first rejection draws from
  normalize(max(0, p - q)); after a fully kept block draws the bonus token from p. p and q are the target's and the
  draft's distributions after the same temperature / top-k / top-p warping (`sampler.probs`).
  """

  sampler: Sampling = Sampling()

  def __call__(self, draft_tokens_BxG, draft_logits_BxGxV, target_logits_BxG1xV, rng) -> Verdict:
    B, G = draft_tokens_BxG.shape
    p_BxG1xV = self.sampler.probs(target_logits_BxG1xV)
    q_BxGxV = self.sampler.probs(draft_logits_BxGxV)
    p_at_draft_BxG = jnp.take_along_axis(p_BxG1xV[:, :G], draft_tokens_BxG[..., None], axis=-1)[..., 0]
    q_at_draft_BxG = jnp.take_along_axis(q_BxGxV, draft_tokens_BxG[..., None], axis=-1)[..., 0]
    accept_rng, resample_rng = jax.random.split(rng)
    u_BxG = jax.random.uniform(accept_rng, (B, G))
    n_B = leading_true_count(u_BxG * q_at_draft_BxG < p_at_draft_BxG)
    # Residual at the first rejection; with q padded by zeros, position G gives p itself (the bonus).
    q_pad_BxG1xV = jnp.concatenate([q_BxGxV, jnp.zeros_like(q_BxGxV[:, :1])], axis=1)
    residual_BxG1xV = jnp.maximum(p_BxG1xV - q_pad_BxG1xV, 0.0)
    residual_BxV = jnp.take_along_axis(residual_BxG1xV, n_B[:, None, None], axis=1)[:, 0]
    p_BxV = jnp.take_along_axis(p_BxG1xV, n_B[:, None, None], axis=1)[:, 0]
    # p == q leaves no residual mass; a rejection then has probability 0, so any choice is exact; use p.
    residual_BxV = jnp.where(jnp.sum(residual_BxV, -1, keepdims=True) > 0, residual_BxV, p_BxV)
    next_B = jax.random.categorical(resample_rng, jnp.log(residual_BxV), axis=-1).astype(jnp.int32)
    return Verdict(n_B, next_B)


RULES = {
    'exact': Exact,
    'rejection_sampling': RejectionSampling,
}


def make_rule(name: str, **kwargs):
  """Builds a rule by its config name; `kwargs` go to its constructor."""
  if name not in RULES:
    raise ValueError(f'Unknown acceptance rule {name!r}; available: {sorted(RULES)}.')
  return RULES[name](**kwargs)
