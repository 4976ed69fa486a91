"""The counterfactual oracle counts what it says it counts: every count equals the one a naive reference (one full
forward pass per token, no cache, no batching) gets on the same pair, under a scorer that both right and wrong
answers reach."""

import jax
import jax.numpy as jnp
import numpy as np

from cospec_jax import oracle
from cospec_jax.models import apply, init_params
from cospec_jax.tasks import arithmetic
from cospec_jax.tasks.task import Arithmetic
from cospec_jax.tasks.tokenizer import CharTokenizer
from tests import helpers

TOKENIZER = CharTokenizer()
PROBLEMS = list(arithmetic.iter_problems(0, 'test', 6))
MAX_NEW = 12


class ParityTask(Arithmetic):
  """The embedded task's prompts, scored by the parity of the completion's token sum: random models get about half
  right, so every count of the oracle is exercised (arithmetic answers would all be wrong)."""

  def score(self, completions, problems):
    del problems
    return np.array([sum(int(t) for t in c) % 2 == 0 for c in completions], bool)


TASK = ParityTask(TOKENIZER, {'test': PROBLEMS})


def _pair(noise):
  config = helpers.tiny_config(TOKENIZER.vocab_size)
  params = init_params(config, jax.random.PRNGKey(0))
  return (config, params), (config, helpers.perturbed(params, jax.random.PRNGKey(1), noise))


def _next_token(model, length):
  """next(tokens) -> the model's greedy choice after every position of `tokens` (one uncached forward pass)."""
  config, params = model
  forward = jax.jit(lambda t: jnp.argmax(apply(config, params, t[None], jnp.arange(length)[None])[0][0], -1))

  def choices(tokens):
    padded = np.full(length, TOKENIZER.pad_id, np.int32)
    padded[:len(tokens)] = tokens
    return np.asarray(forward(jnp.asarray(padded)))[:len(tokens)]  # Causal: the padding after changes nothing.
  return choices


def _greedy(next_token, prefix, n):
  out = []
  while len(out) < n and (not out or out[-1] != TOKENIZER.eos_id):
    out.append(int(next_token(list(prefix) + out)[-1]))
  return out


def _reference(target, draft):
  """oracle.run's counts, computed the slow, obvious way."""
  length = max(len(TASK.prompt(p)) for p in PROBLEMS) + 2 * MAX_NEW + 1
  target_next, draft_next = _next_token(target, length), _next_token(draft, length)
  counts = dict(generated_tokens=0, mismatches=0, problems_with_mismatch=0, target_correct=0, b_fixed=0, c_broken=0,
                b_forks_fixing=0, c_forks_breaking=0)
  for problem in PROBLEMS:
    prompt = TASK.prompt(problem)
    completion = _greedy(target_next, prompt, MAX_NEW)
    right = bool(TASK.score([completion], [problem])[0])
    choices = draft_next(prompt + completion)[len(prompt) - 1:-1]  # The draft's token at each completion position.
    forks = [completion[:j] + [int(c)] for j, c in enumerate(choices) if c != completion[j]]
    outcomes = [bool(TASK.score([head + _greedy(target_next, prompt + head, MAX_NEW - len(head))], [problem])[0])
                for head in forks]
    counts['generated_tokens'] += len(completion)
    counts['mismatches'] += len(forks)
    counts['problems_with_mismatch'] += bool(forks)
    counts['target_correct'] += right
    counts['b_fixed'] += (not right) and any(outcomes)
    counts['c_broken'] += right and not all(outcomes)
    counts['b_forks_fixing'] += 0 if right else sum(outcomes)
    counts['c_forks_breaking'] += len(outcomes) - sum(outcomes) if right else 0
  return counts


def test_counts_equal_a_naive_reference():
  target, draft = _pair(0.3)
  r = oracle.run(target, draft, TASK, PROBLEMS, max_new_tokens=MAX_NEW, batch_size=4)
  expected = _reference(target, draft)
  assert {k: r[k] for k in expected} == expected
  # Every count is exercised: some right and some wrong answers, forks on both, some flipping the outcome.
  assert 0 < expected['target_correct'] < len(PROBLEMS) and expected['mismatches'] > 0
  assert r['b_forks_on_wrong'] > 0 and r['c_forks_on_right'] > 0
  assert expected['b_forks_fixing'] + expected['c_forks_breaking'] > 0
  assert r['b_forks_on_wrong'] + r['c_forks_on_right'] == r['mismatches']
  assert '(b)' in oracle.format_report(r)


def test_identical_draft_never_disagrees():
  target, _ = _pair(0.0)
  r = oracle.run(target, target, TASK, PROBLEMS, max_new_tokens=MAX_NEW, batch_size=4)
  assert r['mismatches'] == 0 and r['b_fixed'] == 0 and r['c_broken'] == 0
  assert r['generated_tokens'] == _reference(target, target)['generated_tokens'] > 0
