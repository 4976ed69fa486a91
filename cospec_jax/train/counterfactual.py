"""Counterfactual swaps: at each mismatch of the target's own trajectory, what if the draft's token had been kept?

`collect` decodes problems with greedy speculative decoding (= the target's greedy answer) under an always-"target"
CoSpec arbiter, whose decision records hold, for every mismatch the scan met, exactly the features a CoSpec policy
sees there. Each mismatch is then replayed with the draft's token forced and the target continuing greedily, and
both answers are scored. From these labelled forks come:
  - `fit_policy`: a supervised warm start for the CoSpec arbiter (keep the draft where that gains reward),
  - `fit_judge`: the AutoJudge-style baseline, a logistic head on the target's hidden state predicting harm (or,
    fix-aware, fitted to the warm start's labels),
  - `oracle_keep_at`: for each problem, a mismatch where keeping the draft turns a wrong answer right (the `oracle`
    rule's upper bound),
  - `oracle_agreement`: how often an arbiter's decisions match the counterfactual labels.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from cospec_jax import files, sharding
from cospec_jax.decoding import AutoregressiveDecoder, CoSpec, DecodeSettings, Exact, SpeculativeDecoder
from cospec_jax.decoding.cospec import SCALAR_FEATURES, ArbiterPolicy, set_input_statistics
from cospec_jax.tasks.tokenizer import Tokenizer

_LAM = SCALAR_FEATURES.index('lam')


@dataclasses.dataclass
class Forks:
  """N labelled mismatches (numpy arrays, leading axis N) and the per-problem outcome of the target's answer."""

  problem_N: np.ndarray  # int: index into the problems passed to `collect`.
  answer_index_N: np.ndarray  # int: where in the answer the mismatch is.
  draft_token_N: np.ndarray  # int: the draft's token there.
  scalars_NxF: np.ndarray  # The arbiter's scalar features (lam column 0).
  target_hidden_NxD: np.ndarray
  draft_hidden_NxD: np.ndarray
  fork_right_N: np.ndarray  # bool: keeping the draft's token, then the target greedily, answers right.
  target_right_P: np.ndarray  # bool [P]: the target's own greedy answer is right, per problem.

  @property
  def target_right_N(self) -> np.ndarray:
    return self.target_right_P[self.problem_N]

  def save(self, path: str) -> None:
    """Writes an .npz atomically (a killed write leaves no file under `path`)."""
    buffer = io.BytesIO()
    np.savez(buffer, **dataclasses.asdict(self))
    files.write_atomically(path, buffer.getvalue())

  @classmethod
  def load(cls, path: str) -> 'Forks':
    with np.load(path) as f:
      return cls(**{k: f[k] for k in f.files})


def continue_forks(target, tokenizer: Tokenizer, prompts: Sequence[Sequence[int]], heads: Sequence[Sequence[int]],
                   max_new_tokens: int, batch_size: int, mesh=None) -> list[list[int]]:
  """The target's greedy continuation of each prompt + forced answer head, within what is left of `max_new_tokens`
  after the head; returns head + continuation per fork. One continuous-batching call: each fork decodes only its
  remaining budget and its row is refilled with the next fork as soon as it is done. `mesh`: as the target's params
  were placed."""
  if not heads:
    return []
  decoder = AutoregressiveDecoder(target[0], settings=DecodeSettings.for_tokenizer(tokenizer, max_new_tokens),
                                  mesh=mesh)
  left = [max(max_new_tokens - len(h), 0) for h in heads]
  gen = decoder.generate_continuous(target[1], [list(p) + list(h) for p, h in zip(prompts, heads)], batch_size,
                                    max_new=[max(n, 1) for n in left])  # A budget of 0 decodes one token, cut below.
  return [list(h) + r.tolist()[:n] for h, r, n in zip(heads, gen.completions(), left)]


def collect(target, draft, task, problems: Sequence[dict], gamma: int, max_new_tokens: int,
            batch_size: int, progress: bool = False, mesh=None) -> Forks:
  """Labelled forks at every mismatch of the target's greedy answers to `problems` of `task` (tasks/task.py; see the
  module docstring).

  `target` and `draft` are (ModelConfig, params), placed on `mesh` when given (sharding.py). Every mismatch is
  recorded (the buffer holds max_new_tokens).
  """
  decoder = SpeculativeDecoder(target[0], draft[0], CoSpec(Exact()), gamma,
                               DecodeSettings.for_tokenizer(task.tokenizer, max_new_tokens),
                               max_decisions=max_new_tokens, mesh=mesh)
  prompts = [task.prompt(p) for p in problems]
  completions, fields = [], {k: [] for k in ('problem_N', 'answer_index_N', 'draft_token_N', 'scalars_NxF',
                                             'target_hidden_NxD', 'draft_hidden_NxD')}
  chunks = decoder.generate_in_batches(target[1], draft[1], prompts, batch_size)
  for start, (gen, n) in zip(range(0, len(prompts), batch_size),
                             tqdm.tqdm(chunks, total=-(-len(prompts) // batch_size), desc='forks',
                                       disable=not progress or jax.process_index() != 0)):
    completions += [c.tolist() for c in gen.completions()[:n]]
    rec = sharding.fetch(gen.records)
    rows_N, slots_N = np.nonzero(rec.mask_BxG[:n])
    fields['problem_N'].append(start + rows_N)
    fields['answer_index_N'].append(rec.answer_index_BxG[rows_N, slots_N])
    fields['draft_token_N'].append(rec.draft_tokens_BxG[rows_N, slots_N])
    fields['scalars_NxF'].append(rec.scalars_BxGxF[rows_N, slots_N])
    fields['target_hidden_NxD'].append(rec.target_hidden_BxGxD[rows_N, slots_N].astype(np.float32))
    fields['draft_hidden_NxD'].append(rec.draft_hidden_BxGxD[rows_N, slots_N].astype(np.float32))
  fields = {k: np.concatenate(v) for k, v in fields.items()}
  heads = [completions[i][:j] + [t] for i, j, t in zip(fields['problem_N'], fields['answer_index_N'],
                                                       fields['draft_token_N'])]
  forked = continue_forks(target, task.tokenizer, [prompts[i] for i in fields['problem_N']], heads, max_new_tokens,
                          batch_size, mesh)
  return Forks(**fields, fork_right_N=task.score(forked, [problems[i] for i in fields['problem_N']]),
               target_right_P=task.score(completions, problems))


def oracle_keep_at(forks: Forks) -> np.ndarray:
  """int [P]: per problem the answer index of its first mismatch where keeping the draft turns a wrong answer right;
  -1 where the target is right or no such mismatch exists."""
  keep_at_P = np.full(forks.target_right_P.shape, -1, np.int64)
  fixes = forks.fork_right_N & ~forks.target_right_N
  for i, j in sorted(zip(forks.problem_N[fixes], forks.answer_index_N[fixes]), reverse=True):
    keep_at_P[i] = j  # Sorted descending, so the first (smallest) index per problem is written last.
  return keep_at_P


def _fit(loss_fn, params, steps: int, learning_rate: float):
  optimizer = optax.adam(learning_rate)

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state, loss = optimizer.init(params), float('nan')  # No steps: params unchanged, no loss measured.
  for _ in range(steps):
    params, opt_state, loss = step(params, opt_state)
  return params, float(loss)


def keep_labels(forks: Forks, lam: float, speed_bonus: float, deviation_cost: float = 0.0
                ) -> tuple[np.ndarray, np.ndarray]:
  """(keep_N, weight_N): keeping the draft's token changes the reward by
  delta = fork_right - target_right + lam * speed_bonus - deviation_cost; keep where delta > 0, weighted by |delta|.

  A fork replays one deviation with the target continuing; an arbiter that keeps the draft at several mismatches
  of one answer compounds their risks, which no single fork sees. `deviation_cost` charges each keep for that, so a
  keep that changes nothing (a neutral fork) is labelled "target" at lam = 0 and "draft" once the speed bonus
  outweighs the cost."""
  delta_N = (forks.fork_right_N.astype(np.float32) - forks.target_right_N + lam * speed_bonus
             - np.float32(deviation_cost))
  return (delta_N > 0).astype(np.float32), np.abs(delta_N)


def fit_policy(policy: ArbiterPolicy, params, forks: Forks, lams: Sequence[float], speed_bonus: float, steps: int,
               learning_rate: float, weight_decay: float = 1e-4, deviation_cost: float = 0.0):
  """Supervised warm start of the arbiter: weighted logistic regression of `keep_labels` for every lam in `lams`
  (full batch), after setting the policy's input standardization from the same samples. Returns (params, loss).
  steps=0 sets the standardization alone (it reads no label): the study's REINFORCE-only arbiter starts there."""
  scalars, keep, weight = [], [], []
  for lam in lams:
    s = forks.scalars_NxF.copy()
    s[:, _LAM] = lam
    k, w = keep_labels(forks, lam, speed_bonus, deviation_cost)
    scalars.append(s), keep.append(k), weight.append(w)
  reps = len(lams)
  scalars, keep, weight = (jnp.asarray(np.concatenate(x)) for x in (scalars, keep, weight))
  target_hidden = jnp.asarray(np.tile(forks.target_hidden_NxD, (reps, 1)))
  draft_hidden = jnp.asarray(np.tile(forks.draft_hidden_NxD, (reps, 1)))
  params = set_input_statistics(params, scalars, target_hidden, draft_hidden)

  def loss_fn(p):
    logit = policy.apply({'params': p}, scalars, target_hidden, draft_hidden)
    nll = jnp.sum(weight * optax.sigmoid_binary_cross_entropy(logit, keep)) / jnp.maximum(jnp.sum(weight), 1e-6)
    kernels = [layer['kernel'] for layer in p.values() if isinstance(layer, dict)]  # Not the fixed statistics.
    return nll + weight_decay * sum(jnp.sum(k ** 2) for k in kernels)

  return _fit(loss_fn, params, steps, learning_rate)


JUDGE_LABELS = ('harm', 'fix_aware')


def fit_judge(forks: Forks, labels: str = 'harm', lam: float = 1.0, speed_bonus: float = 0.2, steps: int = 1000,
              learning_rate: float = 1e-2, weight_decay: float = 1e-3, deviation_cost: float = 0.0) -> dict:
  """The `judge` rule's head, a logistic regression on the target's hidden state. Returns {'w': [D], 'b': []}, the
  logit of "keeping the draft here is harmful" (the rule keeps the draft where its probability is below max_harm).

  labels='harm' (AutoJudge): harmful = keeping the draft turns a right answer wrong.
  labels='fix_aware': CoSpec's warm-start labels at `lam` (`keep_labels`: keeping is good where it fixes a wrong
  answer or, with the speed bonus, changes nothing; bad where it breaks a right one), weighted alike; the head is
  fitted to "keep" and its logit negated, so the rule reads it the same way.
  """
  if labels not in JUDGE_LABELS:
    raise ValueError(f'fit_judge(labels={labels!r}); choose one of {JUDGE_LABELS}.')
  x = jnp.asarray(forks.target_hidden_NxD)
  if labels == 'harm':
    y = jnp.asarray((forks.target_right_N & ~forks.fork_right_N).astype(np.float32))
    w = jnp.ones_like(y)
  else:
    keep, weight = keep_labels(forks, lam, speed_bonus, deviation_cost)
    y, w = jnp.asarray(keep), jnp.asarray(weight)

  def loss_fn(p):
    logit = x @ p['w'] + p['b']
    nll = jnp.sum(w * optax.sigmoid_binary_cross_entropy(logit, y)) / jnp.maximum(jnp.sum(w), 1e-6)
    return nll + weight_decay * jnp.sum(p['w'] ** 2)

  params = {'w': jnp.zeros((x.shape[1],), jnp.float32), 'b': jnp.zeros((), jnp.float32)}
  params = _fit(loss_fn, params, steps, learning_rate)[0]
  return params if labels == 'harm' else jax.tree_util.tree_map(jnp.negative, params)


def oracle_agreement(policy: ArbiterPolicy, params, forks: Forks, lam: float, speed_bonus: float,
                     deviation_cost: float = 0.0) -> dict:
  """How often the arbiter's greedy decision at each fork (the features it sees there, with `lam`) matches the
  counterfactual label (`keep_labels`). 'all': every fork; 'decisive': forks where keeping the draft changes the
  answer (fixes or breaks it), where a wrong decision costs accuracy."""
  scalars = forks.scalars_NxF.copy()
  scalars[:, _LAM] = lam
  logit = policy.apply({'params': params}, jnp.asarray(scalars), jnp.asarray(forks.target_hidden_NxD),
                       jnp.asarray(forks.draft_hidden_NxD))
  keep_N = np.asarray(logit) > 0
  label_N = keep_labels(forks, lam, speed_bonus, deviation_cost)[0] > 0
  match_N = keep_N == label_N
  decisive_N = forks.fork_right_N != forks.target_right_N
  return {'forks': int(len(match_N)), 'all': float(match_N.mean()) if len(match_N) else float('nan'),
          'decisive_forks': int(decisive_N.sum()),
          'decisive': float(match_N[decisive_N].mean()) if decisive_N.any() else float('nan'),
          'kept': int(keep_N.sum()), 'label_keep': int(label_N.sum())}
