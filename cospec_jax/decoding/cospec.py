"""CoSpec: at a mismatch, a learned arbiter decides whether to keep the draft's token or the target's.

The scan over a verified block: where the base rule accepts (the draft equals the target's choice, or passes the
rejection test), keep the draft token; at a mismatch, ask the arbiter. Keeping the draft's token does not end the
block: the target already scored every later position conditioned on the draft prefix, so the scan continues.
Choosing the target's token ends the block with the base rule's correction. An arbiter that always says "target"
is exactly the base rule (a test holds it).

The arbiter sees, at each verified position, `N_SCALAR_FEATURES` numbers (both models' log-probabilities of both
candidate tokens, both entropies, both top-2 margins, the position in the block and in the answer, and the
speed/accuracy knob `lam`) and both models' hidden states, which it projects with learned maps. `lam` is an input,
so one policy yields a whole accuracy/speed curve.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from cospec_jax.decoding.rules import Block, Exact, Verdict, answer_index, scan_with_overrides

SCALAR_FEATURES = ('target_logp_draft', 'target_logp_target', 'draft_logp_draft', 'draft_logp_target',
                   'target_entropy', 'draft_entropy', 'target_margin', 'draft_margin', 'block_position',
                   'answer_position', 'lam')
N_SCALAR_FEATURES = len(SCALAR_FEATURES)


@flax.struct.dataclass
class Decisions:
  """What the arbiter saw and did at each verified position of a block ([B, G, ...] arrays)."""

  scalars_BxGxF: jax.Array  # float32 [.., N_SCALAR_FEATURES].
  target_hidden_BxGxD: jax.Array
  draft_hidden_BxGxD: jax.Array
  keep_draft_BxG: jax.Array  # bool: the action (meaningful where mask).
  mask_BxG: jax.Array  # bool: a mismatch the scan reached, so the arbiter decided.
  draft_tokens_BxG: jax.Array  # int32: the draft's token there (to replay the other branch).
  answer_index_BxG: jax.Array  # int32: its index in the generated answer.


def _distribution_features(logits_BxGxV: jax.Array, tokens_BxGx1: Sequence[jax.Array]):
  """(log-probabilities at each of `tokens_BxGx1`, entropy, top-2 margin) of softmax(logits), in one pass over the
  vocabulary each: the log-normalizer once, no sort (the top-2 margin masks the argmax)."""
  logits_BxGxV = logits_BxGxV.astype(jnp.float32)
  finite_BxGxV = jnp.isfinite(logits_BxGxV)  # A warped-out token (-inf) contributes nothing.
  lse_BxG = jax.nn.logsumexp(logits_BxGxV, axis=-1)
  p_BxGxV = jnp.exp(logits_BxGxV - lse_BxG[..., None])
  entropy_BxG = lse_BxG - jnp.sum(jnp.where(finite_BxGxV, p_BxGxV * logits_BxGxV, 0.0), axis=-1)
  V = logits_BxGxV.shape[-1]
  top_BxG = jnp.max(logits_BxGxV, axis=-1)
  first_BxG = jnp.argmax(logits_BxGxV, axis=-1)
  is_first_BxGxV = jnp.arange(V)[None, None, :] == first_BxG[..., None]
  second_BxG = jnp.max(jnp.where(is_first_BxGxV, -jnp.inf, logits_BxGxV), axis=-1)
  at = [jnp.take_along_axis(logits_BxGxV, t, axis=-1)[..., 0] - lse_BxG for t in tokens_BxGx1]
  return at, entropy_BxG, top_BxG - second_BxG


def scalar_features(block: Block, lam_B: jax.Array) -> jax.Array:
  """float32 [B, G, N_SCALAR_FEATURES] at each draft position, ordered as SCALAR_FEATURES."""
  B, G = block.draft_tokens_BxG.shape
  target_logits_BxGxV = block.target_logits_BxG1xV[:, :G]
  target_tok_BxGx1 = jnp.argmax(target_logits_BxGxV, axis=-1)[..., None]
  draft_tok_BxGx1 = block.draft_tokens_BxG[..., None]
  (t_draft, t_target), t_entropy, t_margin = _distribution_features(target_logits_BxGxV,
                                                                    (draft_tok_BxGx1, target_tok_BxGx1))
  (d_draft, d_target), d_entropy, d_margin = _distribution_features(block.draft_logits_BxGxV,
                                                                    (draft_tok_BxGx1, target_tok_BxGx1))
  floor = -30.0  # A token outside a warped support has log-prob -inf; the policy sees a large negative number.
  block_pos_BxG = jnp.broadcast_to(jnp.arange(G, dtype=jnp.float32)[None, :] / G, (B, G))
  answer_pos_BxG = answer_index(block) / jnp.maximum(block.max_new_B, 1)[:, None]
  columns = [t_draft, t_target, d_draft, d_target, t_entropy, d_entropy, t_margin, d_margin,
             block_pos_BxG, answer_pos_BxG.astype(jnp.float32), jnp.broadcast_to(lam_B[:, None], (B, G))]
  return jnp.maximum(jnp.stack(columns, axis=-1), floor)


class ArbiterPolicy(nn.Module):
  """A small MLP: (scalar features, target hidden, draft hidden) -> logit of "keep the draft token".

  Each input is first standardized with fixed statistics (`*_mean`, `*_inv_std`, identity at init), which
  `set_input_statistics` fills from data; gradients do not flow into them, so training leaves them unchanged.
  """

  hidden: int = 64  # Width of the MLP.
  projection: int = 16  # Width each hidden state is projected to; 0 reads the scalar features alone.

  @nn.compact
  def __call__(self, scalars_xF: jax.Array, target_hidden_xD: jax.Array, draft_hidden_xD: jax.Array) -> jax.Array:
    def standardized(name, x):
      x = x.astype(jnp.float32)
      mean = self.param(f'{name}_mean', nn.initializers.zeros, x.shape[-1:])
      inv_std = self.param(f'{name}_inv_std', nn.initializers.ones, x.shape[-1:])
      shape = (1,) * (x.ndim - 1) + x.shape[-1:]
      return (x - jax.lax.stop_gradient(mean).reshape(shape)) * jax.lax.stop_gradient(inv_std).reshape(shape)

    parts = [standardized('scalars', scalars_xF)]
    if self.projection:  # 0: the scalar features alone (the study's ablation); the hidden states are not read.
      parts += [
          nn.Dense(self.projection, name='target_projection')(standardized('target_hidden', target_hidden_xD)),
          nn.Dense(self.projection, name='draft_projection')(standardized('draft_hidden', draft_hidden_xD))]
    x = jnp.concatenate(parts, axis=-1)
    x = nn.gelu(nn.Dense(self.hidden)(x))
    x = nn.gelu(nn.Dense(self.hidden)(x))
    return nn.Dense(1, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.constant(-2.0))(x)[..., 0]


def set_input_statistics(params: dict, scalars_NxF, target_hidden_NxD, draft_hidden_NxD) -> dict:
  """`params` with each input's standardization set to the mean and 1/std of the given samples."""
  params = dict(params)
  for name, x in (('scalars', scalars_NxF), ('target_hidden', target_hidden_NxD), ('draft_hidden', draft_hidden_NxD)):
    if f'{name}_mean' not in params:  # A policy that does not read this input (projection=0).
      continue
    x = jnp.asarray(x, jnp.float32)
    params[f'{name}_mean'] = jnp.mean(x, axis=0)
    params[f'{name}_inv_std'] = 1.0 / (jnp.std(x, axis=0) + 1e-3)
  return params


def init_policy(policy: ArbiterPolicy, target_width: int, draft_width: int, rng: jax.Array) -> dict:
  """Fresh policy parameters; the output layer starts at "keep the draft" with probability sigmoid(-2) = 12%."""
  return policy.init(rng, jnp.zeros((1, N_SCALAR_FEATURES)), jnp.zeros((1, target_width)),
                     jnp.zeros((1, draft_width)))['params']


@dataclasses.dataclass(frozen=True)
class CoSpec:
  """The collaborative rule. `rule_params` = {'policy': ArbiterPolicy params, 'lam': float or [B] array}.

  `base` is Exact (greedy) or RejectionSampling (at a rejection the arbiter may keep the draft instead of
  resampling). `sample_actions` draws the arbiter's action (REINFORCE rollouts); otherwise it keeps the draft when
  the logit is positive. With rule_params=None the arbiter always says "target" and the rule is `base`.
  """

  base: Any = Exact()
  policy: ArbiterPolicy = ArbiterPolicy()
  sample_actions: bool = False

  @property
  def sampler(self):
    return self.base.sampler

  def __call__(self, block: Block, rng: jax.Array, rule_params: Any = None) -> Verdict:
    B, G = block.draft_tokens_BxG.shape
    action_rng = jax.random.fold_in(rng, 1)  # Independent of the base rule's draws, which use `rng` itself.
    lam_B = (jnp.zeros((B,), jnp.float32) if rule_params is None else
             jnp.broadcast_to(jnp.asarray(rule_params.get('lam', 0.0), jnp.float32), (B,)))
    scalars_BxGxF = scalar_features(block, lam_B)
    target_hidden_BxGxD = block.target_hidden_BxG1xD[:, :G]
    if rule_params is None:
      keep_BxG = jnp.zeros((B, G), bool)
    else:
      logit_BxG = self.policy.apply({'params': rule_params['policy']}, scalars_BxGxF, target_hidden_BxGxD,
                                    block.draft_hidden_BxGxD)
      keep_BxG = (jax.random.uniform(action_rng, (B, G)) < jax.nn.sigmoid(logit_BxG) if self.sample_actions else
                  logit_BxG > 0)
    # The arbiter decided at every mismatch up to and including the one where the scan stopped.
    verdict, decided_BxG = scan_with_overrides(self.base, block, rng, keep_BxG)
    return verdict.replace(record=Decisions(scalars_BxGxF, target_hidden_BxGxD, block.draft_hidden_BxGxD, keep_BxG,
                                            decided_BxG, block.draft_tokens_BxG, answer_index(block)))


def keep_draft_logprob(policy: ArbiterPolicy, params: dict, decisions: Decisions) -> tuple[jax.Array, jax.Array]:
  """log pi(action | features) and the policy's Bernoulli entropy at every recorded position (same shape as mask)."""
  logit = policy.apply({'params': params}, decisions.scalars_BxGxF, decisions.target_hidden_BxGxD,
                       decisions.draft_hidden_BxGxD)
  log_keep, log_target = jax.nn.log_sigmoid(logit), jax.nn.log_sigmoid(-logit)
  logprob = jnp.where(decisions.keep_draft_BxG, log_keep, log_target)
  entropy = -(jnp.exp(log_keep) * log_keep + jnp.exp(log_target) * log_target)
  return logprob, entropy
