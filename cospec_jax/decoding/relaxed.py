"""Relaxed verification rules CoSpec is compared with: each accepts some draft tokens the target would not choose.

They wrap a lossless base rule (`Exact` by default): a draft token is kept when the base accepts it or when the
relaxation does; the block ends at the first token neither accepts, with the base rule's correction there.

A rule's numeric settings are its dataclass fields, and a key of the same name in `rule_params` overrides one at run
time (`rule_params={'k': 3}`): a sweep over settings then compiles the decode loop once per rule, not once per point.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from cospec_jax.decoding.rules import Block, Exact, Verdict, answer_index, scan_with_overrides
from cospec_jax.decoding.sampling import entropy


class _Relaxation:
  """What every relaxed rule shares: the draft proposes with the base rule's sampler, and a call is the base's scan
  with the rule's `overrides(block, rule_params) -> bool [B, G]` (rejected draft tokens to keep anyway)."""

  @property
  def sampler(self):
    return self.base.sampler

  def __call__(self, block: Block, rng: jax.Array, rule_params: Any = None) -> Verdict:
    return scan_with_overrides(self.base, block, rng, self.overrides(block, rule_params))[0]

  def setting(self, rule_params: Any, name: str):
    """The setting `name`: rule_params[name] when the caller passes it (traced), else the field."""
    return rule_params[name] if isinstance(rule_params, dict) and name in rule_params else getattr(self, name)


@dataclasses.dataclass(frozen=True)
class TopK(_Relaxation):
  """Keep a draft token that is among the target's k most likely tokens there."""

  k: int = 2
  base: Any = Exact()

  def __post_init__(self):
    if self.k < 1:
      raise ValueError(f'TopK(k={self.k}) must be >= 1 (k=1 is exact greedy verification).')

  def overrides(self, block: Block, rule_params: Any = None) -> jax.Array:
    G = block.draft_tokens_BxG.shape[1]
    target_logits_BxGxV = block.target_logits_BxG1xV[:, :G]
    draft_logit_BxG = jnp.take_along_axis(target_logits_BxGxV, block.draft_tokens_BxG[..., None], axis=-1)[..., 0]
    # Among the k most likely: fewer than k tokens score strictly higher (ties with the k-th are in, as in top_k).
    higher_BxG = jnp.sum(target_logits_BxGxV > draft_logit_BxG[..., None], axis=-1)
    return higher_BxG < self.setting(rule_params, 'k')


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

  def overrides(self, block: Block, rule_params: Any = None) -> jax.Array:
    G = block.draft_tokens_BxG.shape[1]
    at_draft = lambda logits: jnp.take_along_axis(  # noqa: E731
        jax.nn.softmax(logits.astype(jnp.float32), -1), block.draft_tokens_BxG[..., None], axis=-1)[..., 0]
    confident_BxG = at_draft(block.draft_logits_BxGxV) >= self.setting(rule_params, 'draft_confidence')
    tolerated_BxG = at_draft(block.target_logits_BxG1xV[:, :G]) >= self.setting(rule_params, 'target_floor')
    return confident_BxG & tolerated_BxG


@dataclasses.dataclass(frozen=True)
class Fly(_Relaxation):
  """FLy-style loose verification: an entropy gate with a deferred match window. At a rejected draft token where the
  target is uncertain (entropy >= `min_entropy` nats), keep it if the target agrees with the next `window` draft
  tokens, which it scored conditioned on the kept one: the draft's choice is taken as an equivalent alternative when
  the two models fall back in step. A window reaching past the block cannot be checked, so it rejects."""

  min_entropy: float = 0.5
  window: int = 2
  base: Any = Exact()

  def __post_init__(self):
    if self.window < 1 or self.min_entropy < 0:
      raise ValueError(f'Fly(min_entropy={self.min_entropy}, window={self.window}) needs min_entropy >= 0 and '
                       'window >= 1.')

  def overrides(self, block: Block, rule_params: Any = None) -> jax.Array:
    G = block.draft_tokens_BxG.shape[1]
    target_logits_BxGxV = block.target_logits_BxG1xV[:, :G].astype(jnp.float32)
    agree_BxG = block.draft_tokens_BxG == jnp.argmax(target_logits_BxGxV, axis=-1)
    # run_BxG1[:, i]: agreeing draft tokens in a row from position i (0 at i = G).
    runs = [jnp.zeros(agree_BxG.shape[:1], jnp.int32)]
    for i in reversed(range(G)):
      runs.append(jnp.where(agree_BxG[:, i], runs[-1] + 1, 0))
    run_BxG1 = jnp.stack(runs[::-1], axis=1)
    uncertain_BxG = entropy(jax.nn.log_softmax(target_logits_BxGxV, axis=-1)) >= self.setting(rule_params,
                                                                                              'min_entropy')
    return ~agree_BxG & uncertain_BxG & (run_BxG1[:, 1:] >= self.setting(rule_params, 'window'))


@dataclasses.dataclass(frozen=True)
class Judge(_Relaxation):
  """AutoJudge-style: a logistic head on the target's hidden state predicts whether a mismatch matters (keeping the
  draft's token there would turn a right answer wrong); unimportant ones keep the draft. The head is trained on
  counterfactual swaps (`cospec_jax.train.counterfactual.fit_judge`) and passed as rule_params = {'w': [D], 'b': []}
  (with an optional 'max_harm' overriding the field).
  """

  max_harm: float = 0.5  # Keep the draft token when the predicted probability of harm is below this.
  base: Any = Exact()

  def overrides(self, block: Block, rule_params: Any = None) -> jax.Array:
    if rule_params is None:
      raise ValueError('Judge needs rule_params={"w": [d_model], "b": []}: train the head with '
                       'cospec_jax.train.counterfactual.fit_judge.')
    G = block.draft_tokens_BxG.shape[1]
    hidden_BxGxD = block.target_hidden_BxG1xD[:, :G].astype(jnp.float32)
    harm_logit_BxG = hidden_BxGxD @ rule_params['w'] + rule_params['b']
    return jax.nn.sigmoid(harm_logit_BxG) < self.setting(rule_params, 'max_harm')


@dataclasses.dataclass(frozen=True)
class Oracle(_Relaxation):
  """The upper bound, not a method: keeps the draft's token at the one mismatch per row that a search found to turn
  the answer right (`cospec_jax.train.counterfactual` branches both ways at every mismatch and rolls out).
  rule_params = {'keep_at_B': int32 [B]}, the answer index to keep the draft at, -1 for none."""

  base: Any = Exact()

  def overrides(self, block: Block, rule_params: Any = None) -> jax.Array:
    if rule_params is None:
      raise ValueError('Oracle needs rule_params={"keep_at_B": int32 [B]} from a counterfactual search.')
    return answer_index(block) == jnp.asarray(rule_params['keep_at_B'], jnp.int32)[:, None]
