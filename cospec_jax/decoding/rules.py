"""Acceptance rules: given a drafted block and the target's scores for it, which draft tokens to keep.

Every rule is a small frozen dataclass with the same interface:

  rule.sampler                                   how the draft proposes (Greedy or Sampling)
  rule(block, rng, rule_params) -> Verdict       what to keep of one block

A Verdict keeps the first `n_accepted_B` draft tokens and appends `next_token_B` after them. `block.target_logits`
at index i is the target's prediction for the position of draft token i, given the committed prefix and the draft
tokens before i; index G predicts the token after a fully kept block. `rule_params` carries what a rule learns
(the CoSpec arbiter's policy) as a dynamic argument, so a trained rule needs no recompilation.

The lossless rules are built from two steps that other rules reuse: `accepts` (which draft tokens pass the target's
test, scanning left to right) and `correction` (the token committed where the scan stops). A new rule is one class
here (or in a module of its own) plus one entry in `registry.RULES`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp

from cospec_jax.decoding.sampling import Greedy, Sampling
from cospec_jax.decoding.state import gather_B


@flax.struct.dataclass
class Block:
  """One drafted block and everything a rule may read about it. G draft tokens, V vocabulary."""

  draft_tokens_BxG: jax.Array  # int32: the draft's proposals d_1..d_G.
  draft_logits_BxGxV: jax.Array  # float32: the logits each d_i was drawn from.
  target_logits_BxG1xV: jax.Array  # float32: the target's predictions at the G+1 verified positions.
  draft_hidden_BxGxD: jax.Array  # The draft's final hidden state from which d_i was predicted.
  target_hidden_BxG1xD: jax.Array  # The target's final hidden state at each verified position.
  generated_B: jax.Array  # int32: tokens generated before this block (position of d_1 in the answer).
  max_new_B: jax.Array  # int32: each row's token budget (to express positions as fractions).


@flax.struct.dataclass
class Verdict:
  """What a rule keeps of one block; `record` is an optional per-position pytree of [B, G, ...] arrays whose
  `mask_BxG` entry says which positions hold a decision (collected by the decode loop for learning)."""

  n_accepted_B: jax.Array  # int32 in [0, G]: leading draft tokens kept.
  next_token_B: jax.Array  # int32: the token committed after them (a correction, or the bonus token).
  record: Optional[Any] = None
  mismatch_BxG: Optional[jax.Array] = None  # bool: positions the base test rejected within the scan; default n.
  kept_BxG: Optional[jax.Array] = None  # bool: of those, the draft tokens kept anyway; default none.


def answer_index(block: Block) -> jax.Array:
  """int32 [B, G]: the index of each draft position in the generated answer."""
  return block.generated_B[:, None] + jnp.arange(block.draft_tokens_BxG.shape[1], dtype=jnp.int32)[None, :]


def leading_true_count(ok_BxG: jax.Array) -> jax.Array:
  """Length of the all-True prefix of each row: the number of draft tokens a left-to-right scan keeps."""
  return jnp.sum(jnp.cumprod(ok_BxG.astype(jnp.int32), axis=1), axis=1).astype(jnp.int32)


def scan_with_overrides(base, block: Block, rng: jax.Array, keep_BxG: jax.Array) -> tuple[Verdict, jax.Array]:
  """The scan every relaxed rule shares: keep draft token i when `base` accepts it or `keep_BxG` overrides the
  rejection; stop at the first token neither keeps, with the base's correction there.

  Returns the verdict and decided_BxG: the rejected positions the scan reached (where an override was considered).
  With keep_BxG all False this is `base` draw for draw (the same key split).
  """
  accept_rng, correct_rng = jax.random.split(rng)
  agree_BxG = base.accepts(block, accept_rng)
  n_B = leading_true_count(agree_BxG | keep_BxG)
  decided_BxG = ~agree_BxG & (jnp.arange(agree_BxG.shape[1])[None, :] <= n_B[:, None])
  verdict = Verdict(n_B, base.correction(block, n_B, correct_rng), mismatch_BxG=decided_BxG,
                    kept_BxG=decided_BxG & keep_BxG)
  return verdict, decided_BxG


@dataclasses.dataclass(frozen=True)
class Exact:
  """Greedy speculative decoding: keep draft tokens while they equal the target's argmax. Lossless."""

  sampler: Greedy = Greedy()

  def accepts(self, block: Block, rng: jax.Array) -> jax.Array:
    """bool [B, G]: draft token i equals the target's argmax there."""
    del rng
    G = block.draft_tokens_BxG.shape[1]
    return block.draft_tokens_BxG == jnp.argmax(block.target_logits_BxG1xV[:, :G], axis=-1)

  def correction(self, block: Block, n_B: jax.Array, rng: jax.Array) -> jax.Array:
    """int32 [B]: the target's argmax at position n (a correction, or the bonus when n == G)."""
    del rng
    return jnp.argmax(gather_B(block.target_logits_BxG1xV, n_B), axis=-1).astype(jnp.int32)

  def __call__(self, block: Block, rng: jax.Array, rule_params: Any = None) -> Verdict:
    del rule_params
    return scan_with_overrides(self, block, rng, jnp.zeros(block.draft_tokens_BxG.shape, bool))[0]


@dataclasses.dataclass(frozen=True)
class RejectionSampling:
  """Speculative sampling (Leviathan et al. 2023; Chen et al. 2023). Lossless for the warped target distribution.

  Keeps draft token x with probability min(1, p(x) / q(x)); at the first rejection draws from
  normalize(max(0, p - q)); after a fully kept block draws the bonus token from p. p and q are the target's and the
  draft's distributions after the same temperature / top-k / top-p warping (`sampler.probs`).
  """

  sampler: Sampling = Sampling()

  def accepts(self, block: Block, rng: jax.Array) -> jax.Array:
    """bool [B, G]: u * q(d_i) < p(d_i) with u ~ U[0, 1)."""
    G = block.draft_tokens_BxG.shape[1]
    p_at_draft_BxG = jnp.take_along_axis(self.sampler.probs(block.target_logits_BxG1xV[:, :G]),
                                         block.draft_tokens_BxG[..., None], axis=-1)[..., 0]
    q_at_draft_BxG = jnp.take_along_axis(self.sampler.probs(block.draft_logits_BxGxV),
                                         block.draft_tokens_BxG[..., None], axis=-1)[..., 0]
    return jax.random.uniform(rng, p_at_draft_BxG.shape) * q_at_draft_BxG < p_at_draft_BxG

  def correction(self, block: Block, n_B: jax.Array, rng: jax.Array) -> jax.Array:
    """int32 [B]: a draw from normalize(max(0, p - q)) at position n, or from p when n == G."""
    p_BxV = self.sampler.probs(gather_B(block.target_logits_BxG1xV, n_B))
    G = block.draft_tokens_BxG.shape[1]
    q_BxV = self.sampler.probs(gather_B(block.draft_logits_BxGxV, jnp.minimum(n_B, G - 1)))
    q_BxV = jnp.where((n_B < G)[:, None], q_BxV, 0.0)  # No draft distribution after the block: the bonus is p.
    residual_BxV = jnp.maximum(p_BxV - q_BxV, 0.0)
    # p == q leaves no residual mass; a rejection then has probability 0, so any choice is exact; use p.
    residual_BxV = jnp.where(jnp.sum(residual_BxV, -1, keepdims=True) > 0, residual_BxV, p_BxV)
    return jax.random.categorical(rng, jnp.log(residual_BxV), axis=-1).astype(jnp.int32)

  def __call__(self, block: Block, rng: jax.Array, rule_params: Any = None) -> Verdict:
    del rule_params
    return scan_with_overrides(self, block, rng, jnp.zeros(block.draft_tokens_BxG.shape, bool))[0]
