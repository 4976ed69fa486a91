"""Relaxed verification rules CoSpec is compared with: each accepts some draft tokens the target would not choose.

They wrap a lossless base rule (`Exact` by default): a draft token is kept when the base accepts it or when the
relaxation does; the block ends at the first token neither accepts, with the base rule's correction there.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from cospec_jax.decoding.rules import Block, Exact, Verdict, scan_with_overrides


class _Relaxation:
  """What every relaxed rule shares: the draft proposes with the base rule's sampler, and a call is the base's scan
  with the rule's `overrides(block) -> bool [B, G]` (rejected draft tokens to keep anyway)."""

  @property
  def sampler(self):
    return self.base.sampler

  def __call__(self, block: Block, rng: jax.Array, rule_params: Any = None) -> Verdict:
    del rule_params
    return scan_with_overrides(self.base, block, rng, self.overrides(block))[0]


@dataclasses.dataclass(frozen=True)
class TopK(_Relaxation):
  """Keep a draft token that is among the target's k most likely tokens there."""

  k: int = 2
  base: Any = Exact()

  def __post_init__(self):
    if self.k < 1:
      raise ValueError(f'TopK(k={self.k}) must be >= 1 (k=1 is exact greedy verification).')

  def overrides(self, block: Block) -> jax.Array:
    G = block.draft_tokens_BxG.shape[1]
    target_logits_BxGxV = block.target_logits_BxG1xV[:, :G]
    k = min(self.k, target_logits_BxGxV.shape[-1])
    kth_BxGx1 = jax.lax.top_k(target_logits_BxGxV, k)[0][..., -1:]
    draft_logit_BxG = jnp.take_along_axis(target_logits_BxGxV, block.draft_tokens_BxG[..., None], axis=-1)[..., 0]
    return draft_logit_BxG >= kth_BxGx1[..., 0]


@dataclasses.dataclass(frozen=True)
class Threshold(_Relaxation):
  """Confidence deferral in the style of BiLD and speculative cascades: keep a draft token the draft is confident
  in (its probability >= `draft_confidence`) unless the target gives it less than `target_floor`."""

  draft_confidence: float = 0.8
  target_floor: float = 0.05
  base: Any = Exact()

  def __post_init__(self):
    for name in ('draft_confidence', 'target_floor'):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f'Threshold({name}={getattr(self, name)}) must be a probability in [0, 1].')

  def overrides(self, block: Block) -> jax.Array:
    G = block.draft_tokens_BxG.shape[1]
    at_draft = lambda logits: jnp.take_along_axis(  # noqa: E731
        jax.nn.softmax(logits.astype(jnp.float32), -1), block.draft_tokens_BxG[..., None], axis=-1)[..., 0]
    confident_BxG = at_draft(block.draft_logits_BxGxV) >= self.draft_confidence
    tolerated_BxG = at_draft(block.target_logits_BxG1xV[:, :G]) >= self.target_floor
    return confident_BxG & tolerated_BxG
