"""REINFORCE for the CoSpec arbiter, written out: leave-one-out baselines, log-probs at decisions only, entropy bonus.

Rollouts come from the compiled decode loop with `CoSpec(sample_actions=True)` and `max_decisions > 0`, which records
(features, action, mask) per row in fixed-size buffers. The update below is then a jitted function of the policy
parameters alone: the draft and the target are frozen and never differentiated.

  loss = -mean_rows( advantage_row * sum_decisions log pi(action | features) ) - beta * mean_decisions( entropy )
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cospec_jax import sharding
from cospec_jax.decoding.cospec import ArbiterPolicy, Decisions, keep_draft_logprob


def leave_one_out_advantages(rewards_PxK: jax.Array, normalize: bool = False) -> jax.Array:
  """r_k minus the mean reward of the other K-1 rollouts of the same prompt; [P, K] -> [P, K]. `normalize` divides
  them by their standard deviation over the whole batch (not per group, which would blow up the groups that differ
  by a hair), so the step size does not shrink as rewards concentrate."""
  K = rewards_PxK.shape[1]
  if K < 2:
    raise ValueError(f'A leave-one-out baseline needs K >= 2 rollouts per prompt; got K={K}.')
  others_PxK = (jnp.sum(rewards_PxK, axis=1, keepdims=True) - rewards_PxK) / (K - 1)
  advantages_PxK = rewards_PxK - others_PxK
  if normalize:
    advantages_PxK = advantages_PxK / (jnp.std(advantages_PxK) + 1e-6)
  return advantages_PxK


def reinforce_loss(params: Any, policy: ArbiterPolicy, decisions: Decisions, advantages_B: jax.Array,
                   entropy_coef: float) -> tuple[jax.Array, dict]:
  """The surrogate loss for one batch of rollouts (rows B, decision slots N); returns (loss, metrics)."""
  logprob_BxN, entropy_BxN = keep_draft_logprob(policy, params, decisions)
  mask_BxN = decisions.mask_BxG.astype(jnp.float32)
  policy_term = -jnp.mean(jax.lax.stop_gradient(advantages_B) * jnp.sum(logprob_BxN * mask_BxN, axis=1))
  n_decisions = jnp.maximum(jnp.sum(mask_BxN), 1.0)
  mean_entropy = jnp.sum(entropy_BxN * mask_BxN) / n_decisions
  keep_rate = jnp.sum(decisions.keep_draft_BxG * mask_BxN) / n_decisions
  return policy_term - entropy_coef * mean_entropy, {'policy_entropy': mean_entropy, 'draft_kept_rate': keep_rate,
                                                     'decisions': jnp.sum(mask_BxN)}


def make_update(policy: ArbiterPolicy, optimizer: optax.GradientTransformation, entropy_coef: float,
                mesh: Optional[Mesh] = None):
  """Returns jitted (params, opt_state, decisions, advantages_B) -> (params, opt_state, metrics).

  With a mesh, the rollouts (decisions, advantages) are split over its `data` axis and the small policy is
  replicated: each device computes its rows' gradient and XLA sums them, exactly the loss of the whole batch.
  """

  def update(params, opt_state, decisions: Decisions, advantages_B: jax.Array):
    (loss, metrics), grads = jax.value_and_grad(reinforce_loss, has_aux=True)(params, policy, decisions,
                                                                             advantages_B, entropy_coef)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, dict(metrics, loss=loss,
                                                                grad_norm=optax.global_norm(grads))

  if mesh is None:
    return jax.jit(update, donate_argnums=(0, 1))
  replicated, rows = NamedSharding(mesh, PartitionSpec()), sharding.batch_sharding(mesh)
  return jax.jit(update, in_shardings=(replicated, replicated, rows, rows),
                 out_shardings=(replicated, replicated, replicated), donate_argnums=(0, 1))
