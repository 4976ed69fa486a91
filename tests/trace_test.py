"""The collaboration trace: each committed token's source is recorded in the loop, agrees with the loop's own counts,
and renders faithfully to the terminal and to HTML."""

import re

import jax
import jax.numpy as jnp
import numpy as np

from cospec_jax import trace
from cospec_jax.decoding import CoSpec, DecodeSettings, Exact, SpeculativeDecoder
from cospec_jax.decoding import state as state_lib
from cospec_jax.decoding.cospec import ArbiterPolicy, init_policy
from cospec_jax.decoding.speculative import _record_sources
from tests import helpers

P, A, K, C, X = state_lib.PROMPT, state_lib.AGREED, state_lib.KEPT, state_lib.CORRECTION, state_lib.BONUS


def test_sources_of_one_step():
  """Row 0 kept its whole block (one draft token at a mismatch), row 1 was corrected after one, row 2 hit EOS inside
  its kept draft tokens, row 3 was done."""
  sources = _record_sources(jnp.zeros((4, 8), jnp.int8), start_B=jnp.array([2, 3, 1, 2]),
                            committed_B=jnp.array([4, 2, 2, 0]), n_B=jnp.array([3, 1, 3, 0]),
                            kept_BxG=jnp.array([[False, True, False], [False] * 3, [False] * 3, [False] * 3]))
  np.testing.assert_array_equal(np.asarray(sources), [[P, P, A, K, A, X, P, P], [P, P, P, A, C, P, P, P],
                                                      [P, A, A, P, P, P, P, P], [P] * 8])


def _check_counts(gen, g):
  st = jax.device_get(gen.stats)
  for b, src in enumerate(gen.completion_sources()):
    assert np.sum((src == A) | (src == K)) == st.accepted_B[b]
    assert np.sum(src == K) == st.kept_at_mismatch_B[b]
    assert np.sum((src == C) | (src == X)) <= st.target_calls_B[b]  # One per call, unless EOS or the budget cut it.
    assert len(src) == st.generated_B[b] and np.all(src != P)
    # A bonus token comes right after a whole block of draft tokens.
    for i in np.flatnonzero(src == X):
      assert i >= g and np.all((src[i - g:i] == A) | (src[i - g:i] == K))
  prompt_lengths = np.asarray(gen.prompt_lengths_B)
  assert all(np.all(np.asarray(gen.sources_BxT)[b, :n] == P) for b, n in enumerate(prompt_lengths))


def test_loop_sources_match_its_stats():
  tc, tp, dc, dp = helpers.tiny_pair(noise=0.05)
  prompts = helpers.ragged_prompts(6, tc.vocab_size, seed=4)
  settings = DecodeSettings(max_new_tokens=20, eos_ids=(1,))
  spd = SpeculativeDecoder(tc, dc, Exact(), 3, settings).generate(tp, dp, prompts)
  _check_counts(spd, 3)
  assert not any(np.any(s == K) for s in spd.completion_sources())  # Exact never keeps a rejected token.
  assert any(np.any(s == C) for s in spd.completion_sources()) and any(np.any(s == X) for s in spd.completion_sources())
  policy = ArbiterPolicy(hidden=8, projection=2)
  params = init_policy(policy, tc.d_model, dc.d_model, jax.random.PRNGKey(0))
  params['Dense_2']['bias'] = jnp.full_like(params['Dense_2']['bias'], 2.0)  # Keep the draft at most mismatches.
  cospec = SpeculativeDecoder(tc, dc, CoSpec(Exact(), policy), 3, settings).generate(
      tp, dp, prompts, rule_params={'policy': params, 'lam': 0.0})
  _check_counts(cospec, 3)
  assert sum(int(np.sum(s == K)) for s in cospec.completion_sources()) > 0


class _Letters:
  eos_id = 0

  def decode(self, ids):
    return ''.join('<&>\nab'[i] for i in ids)


def test_rendering_keeps_the_text_and_escapes_html():
  marked = trace.pieces(_Letters(), [4, 1, 3, 5, 2, 0], [A, K, C, X, A, C])
  assert ''.join(t for t, _ in marked) == 'a&\nb>'  # EOS dropped.
  colored = trace.ansi(marked)
  assert re.sub(r'\033\[[0-9;]*m', '', colored) == 'a&\nb>'
  assert trace.STYLES[K][0] in colored
  page = trace.html_page([{'index': 3, 'question': 'q <1>', 'reference': '5', 'cospec': marked, 'target': marked,
                           'cospec_answer': '5', 'target_answer': '6', 'cospec_right': True, 'target_right': False,
                           'counts': trace.count_sources(marked)}], 'title')
  assert '<span class="s2" title="draft token, kept at a mismatch by the arbiter">&amp;</span>' in page
  assert 'q &lt;1&gt;' in page and '<script' not in page and 'http' not in page
  assert trace.count_sources(marked) == {'agreed': 2, 'kept by the arbiter': 1, 'corrections': 1, 'bonus': 1}
