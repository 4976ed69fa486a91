"""The counterfactual oracle counts what it says it counts."""

import jax

from cospec_jax import oracle
from cospec_jax.models import init_params
from cospec_jax.tasks import arithmetic
from cospec_jax.tasks.task import Arithmetic
from cospec_jax.tasks.tokenizer import CharTokenizer
from tests import helpers

TOKENIZER = CharTokenizer()
PROBLEMS = list(arithmetic.iter_problems(0, 'test', 6))
TASK = Arithmetic(TOKENIZER, {'test': PROBLEMS})


def _pair(noise):
  config = helpers.tiny_config(TOKENIZER.vocab_size)
  params = init_params(config, jax.random.PRNGKey(0))
  return (config, params), (config, helpers.perturbed(params, jax.random.PRNGKey(1), noise))


def test_identical_draft_never_disagrees():
  target, _ = _pair(0.0)
  r = oracle.run(target, target, TASK, PROBLEMS, max_new_tokens=12, batch_size=4)
  assert r['mismatches'] == 0 and r['b_fixed'] == 0 and r['c_broken'] == 0
  assert r['generated_tokens'] > 0


def test_counts_are_consistent():
  target, draft = _pair(0.3)
  r = oracle.run(target, draft, TASK, PROBLEMS, max_new_tokens=12, batch_size=4)
  assert 0 < r['mismatches'] <= r['generated_tokens']
  assert r['target_wrong'] + r['target_correct'] == len(PROBLEMS)
  assert r['b_forks_on_wrong'] + r['c_forks_on_right'] == r['mismatches']
  assert r['b_fixed'] <= r['target_wrong'] and r['c_broken'] <= r['target_correct']
  assert '(b)' in oracle.format_report(r)
