"""Continuous batching (decoding/continuous.py) gives every prompt what static batching gives it: the same tokens,
per-prompt statistics, sources and decision records, in prompt order, while finished rows are refilled."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cospec_jax.decoding import (ArbiterPolicy, AutoregressiveDecoder, CoSpec, DecodeSettings, Exact,
                                 RejectionSampling, Sampling, SpeculativeDecoder)
from cospec_jax.decoding.cospec import init_policy
from cospec_jax.decoding import continuous
from cospec_jax.decoding.autoregressive import prefill_chunked, prefill_into
from cospec_jax.decoding.relaxed import Oracle
from cospec_jax.models import transformer
from tests import helpers

N_PROMPTS, ROWS, MAX_NEW = 11, 4, 24


@pytest.fixture(scope='module')
def pair():
  return helpers.tiny_pair(noise=0.15)


@pytest.fixture(scope='module')
def workload(pair):
  """Ragged prompts, long-tailed per-prompt budgets (most short, a few the whole budget) and an EOS id some rows
  hit: so rows finish at many different steps and most prompts start in a refilled row."""
  tc, tp, _, _ = pair
  prompts = helpers.ragged_prompts(N_PROMPTS, tc.vocab_size, seed=5)
  budgets = np.minimum(np.random.RandomState(0).geometric(0.15, N_PROMPTS), MAX_NEW).astype(np.int32)
  free = AutoregressiveDecoder(tc, settings=DecodeSettings(max_new_tokens=MAX_NEW)).generate(tp, prompts)
  counts = np.bincount(np.concatenate([c[1:-1] for c in free.completions()]), minlength=tc.vocab_size)
  eos = int(np.argsort(counts)[-3])  # Frequent enough that some rows stop at it, not so frequent that all do.
  return prompts, budgets, DecodeSettings(max_new_tokens=MAX_NEW, eos_ids=(eos,))


def _static(decoder, params, prompts, budgets, rule_params=None, row_params=None):
  """Static batching of the same prompts, ROWS per call, each chunk with its own rows' budgets."""
  gens = []
  for start in range(0, len(prompts), ROWS):
    chunk, b = prompts[start:start + ROWS], budgets[start:start + ROWS]
    tokens, lengths = helpers.pad(chunk)
    if isinstance(decoder, AutoregressiveDecoder):
      gens.append(decoder(*params, tokens, lengths, jax.random.PRNGKey(0), b))
    else:
      p = rule_params
      if row_params is not None:
        p = {**(rule_params or {}), **jax.tree_util.tree_map(lambda x: x[start:start + ROWS], row_params)}
      gens.append(decoder(*params, tokens, lengths, jax.random.PRNGKey(0), b, p))
  return gens


def _stats_rows(gens):
  stats = [jax.device_get(g.stats) for g in gens]
  return {k: np.concatenate([getattr(s, k) for s in stats]) for k in vars(stats[0])}


def _check_same(cont, gens, records=False):
  static = [c for g in gens for c in g.completions()]
  got = cont.completions()
  assert len(got) == len(static) == N_PROMPTS
  for i, (s, c) in enumerate(zip(static, got)):
    np.testing.assert_array_equal(c, s, err_msg=f'prompt {i}')
  for k, v in _stats_rows(gens).items():
    np.testing.assert_array_equal(getattr(jax.device_get(cont.stats), k), v, err_msg=k)
  for s, c in zip([x for g in gens for x in g.completion_sources()], cont.completion_sources()):
    np.testing.assert_array_equal(c, s)
  if records:
    np.testing.assert_array_equal(cont.n_records_B, np.concatenate([g.n_records_B for g in gens]))
    static_records = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *[jax.device_get(g.records) for g in gens])
    mask = static_records.mask_BxG
    np.testing.assert_array_equal(cont.records.mask_BxG, mask)
    for name in ('keep_draft_BxG', 'draft_tokens_BxG', 'answer_index_BxG'):
      np.testing.assert_array_equal(np.asarray(getattr(cont.records, name))[mask],
                                    getattr(static_records, name)[mask], err_msg=name)
    np.testing.assert_allclose(np.asarray(cont.records.scalars_BxGxF)[mask], static_records.scalars_BxGxF[mask],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('chunk', [0, 3])
def test_refill_prefill_writes_its_rows_alone(pair, chunk):
  """The in-place refill's one call for all its rows (continuous.take_rows, prefill_chunked, continuous.write_rows):
  the given rows (in any order) get their prompts' cache entries, as a prefill of each prompt alone gives them; a
  row index past the batch is an unused slot that writes nothing; every other row keeps its entries bit for bit."""
  tc, tp, _, _ = pair
  B, S = 4, 16
  old_BxP, _ = helpers.pad(helpers.ragged_prompts(B, tc.vocab_size, seed=1))
  cache = prefill_into(tc, tp, transformer.init_cache(tc, B, S), old_BxP)
  new = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [3]]  # The third is the unused slot's.
  new_KxP, lengths_K = helpers.pad(new)
  rows_K = jnp.array([2, 0, B], jnp.int32)

  def prefill_rows(params, cache, rows_K, tokens_KxP, lengths_K):
    rows_cache = prefill_chunked(tc, params, continuous.take_rows(cache, rows_K), tokens_KxP, chunk, lengths_K)
    return continuous.write_rows(cache, rows_K, rows_cache)

  out = jax.jit(prefill_rows)(tp, cache, rows_K, new_KxP, lengths_K.at[2].set(0))
  for row in (1, 3):
    np.testing.assert_array_equal(out.k_YxBxSxCxH[:, row], cache.k_YxBxSxCxH[:, row])
    np.testing.assert_array_equal(out.v_YxBxSxCxH[:, row], cache.v_YxBxSxCxH[:, row])
  for row, prompt in ((2, new[0]), (0, new[1])):
    alone = prefill_into(tc, tp, transformer.init_cache(tc, 1, S), jnp.asarray([prompt], jnp.int32))
    n = len(prompt)
    np.testing.assert_allclose(out.k_YxBxSxCxH[:, row, :n], alone.k_YxBxSxCxH[:, 0, :n], atol=1e-5)
    np.testing.assert_allclose(out.v_YxBxSxCxH[:, row, :n], alone.v_YxBxSxCxH[:, 0, :n], atol=1e-5)
    assert not np.allclose(out.k_YxBxSxCxH[:, row, :n], cache.k_YxBxSxCxH[:, row, :n])  # Rewritten.


@pytest.mark.parametrize('refills_per_step', [1, 3])
def test_rows_refilled_one_by_one_or_together_agree(pair, workload, refills_per_step):
  """However many freed rows one call refills (one per step, or several prefilled together), every prompt gets
  static batching's tokens and statistics. The first ROWS prompts have a budget of 1, so every row frees after the
  first step: with 3 refills per step, three rows are prefilled in one call and the fourth a step later."""
  tc, tp, dc, dp = pair
  prompts, budgets, settings = workload
  budgets = np.concatenate([np.ones(ROWS, np.int32), budgets[ROWS:]])
  settings = dataclasses.replace(settings, refills_per_step=refills_per_step)
  spd = SpeculativeDecoder(tc, dc, Exact(), 2, settings)
  cont = spd.generate_continuous(tp, dp, prompts, ROWS, jax.random.PRNGKey(0), max_new=budgets)
  _check_same(cont, _static(spd, (tp, dp), prompts, budgets))


@pytest.mark.parametrize('kind,prefill_ahead,prefill_chunk', [('spd', 3, 4), ('spd', ROWS, 256),
                                                                ('target_only', 2 * ROWS, 256)])
def test_prompts_prefilled_ahead_equal_static(pair, workload, kind, prefill_ahead, prefill_chunk):
  """Prompts prefilled ahead into a stage and copied into the freed rows give static batching's tokens and
  statistics. Every row frees after the first step (budget 1): with a stage of 3 < 4 rows, three rows take staged
  prompts and the fourth waits a step, then finds the stage empty and restages; with 8 > 4 rows, one restage serves
  several steps."""
  tc, tp, dc, dp = pair
  prompts, budgets, settings = workload
  budgets = np.concatenate([np.ones(ROWS, np.int32), budgets[ROWS:]])
  settings = dataclasses.replace(settings, prefill_ahead=prefill_ahead, prefill_chunk=prefill_chunk)
  if kind == 'spd':
    decoder, params = SpeculativeDecoder(tc, dc, Exact(), 2, settings), (tp, dp)
  else:
    decoder, params = AutoregressiveDecoder(tc, settings=settings), (tp,)
  cont = decoder.generate_continuous(*params, prompts, ROWS, max_new=budgets, buckets=None)
  _check_same(cont, _static(decoder, params, prompts, budgets))


def test_workload_makes_rows_finish_at_different_steps(pair, workload):
  """Guards the tests below: rows end by EOS and by budget, at many lengths, and prompts outnumber rows."""
  tc, tp, _, _ = pair
  prompts, budgets, settings = workload
  gens = _static(AutoregressiveDecoder(tc, settings=settings), (tp,), prompts, budgets)
  completions = [c for g in gens for c in g.completions()]
  eos = settings.eos_ids[0]
  by_eos = [len(c) < b for c, b in zip(completions, budgets)]
  assert any(by_eos) and not all(by_eos)
  assert all(c[-1] == eos for c, e in zip(completions, by_eos) if e)
  assert len({len(c) for c in completions}) >= 6 and N_PROMPTS > 2 * ROWS


def test_target_only_continuous_equals_static(pair, workload):
  tc, tp, _, _ = pair
  prompts, budgets, settings = workload
  decoder = AutoregressiveDecoder(tc, settings=settings)
  cont = decoder.generate_continuous(tp, prompts, ROWS, max_new=budgets, buckets=None)
  _check_same(cont, _static(decoder, (tp,), prompts, budgets))


@pytest.mark.parametrize('gamma,prefill_chunk', [(1, 256), (3, 4)])
def test_greedy_spd_continuous_equals_static_and_target(pair, workload, gamma, prefill_chunk):
  """prefill_chunk 4 < the longest prompt: a refilled row is prefilled 4 positions per call up to its own length."""
  tc, tp, dc, dp = pair
  prompts, budgets, settings = workload
  settings = dataclasses.replace(settings, prefill_chunk=prefill_chunk)
  decoder = SpeculativeDecoder(tc, dc, Exact(), gamma, settings)
  cont = decoder.generate_continuous(tp, dp, prompts, ROWS, max_new=budgets, buckets=None)
  _check_same(cont, _static(decoder, (tp, dp), prompts, budgets))
  target = AutoregressiveDecoder(tc, settings=settings).generate_continuous(tp, prompts, ROWS, max_new=budgets,
                                                                            buckets=None)
  for t, c in zip(target.completions(), cont.completions()):
    np.testing.assert_array_equal(c, t)
  stats = jax.device_get(cont.stats)
  assert 0 < stats.accepted_B.sum() < stats.proposed_B.sum()


def test_cospec_records_continuous_equal_static(pair, workload):
  """A deterministic arbiter that keeps the draft at some mismatches and not others: the same tokens, kept counts
  and decision records per prompt."""
  tc, tp, dc, dp = pair
  prompts, budgets, settings = workload
  policy = helpers.perturbed(init_policy(ArbiterPolicy(), tc.d_model, dc.d_model, jax.random.PRNGKey(3)),
                             jax.random.PRNGKey(4), 0.3)  # Logits of both signs.
  rule_params = {'policy': policy, 'lam': 0.5}
  decoder = SpeculativeDecoder(tc, dc, CoSpec(Exact()), 3, settings, max_decisions=8)
  cont = decoder.generate_continuous(tp, dp, prompts, ROWS, rule_params=rule_params, max_new=budgets, buckets=None)
  _check_same(cont, _static(decoder, (tp, dp), prompts, budgets, rule_params), records=True)
  stats = jax.device_get(cont.stats)
  assert 0 < stats.kept_at_mismatch_B.sum() < stats.mismatches_B.sum()
  assert np.max(cont.n_records_B) > 8  # Some rows overflow the buffer: the dropped decisions are counted alike.


def test_per_prompt_rule_params_follow_their_prompt(pair, workload):
  """Oracle's keep_at_B is per prompt: in continuous mode each row reads the entry of the prompt it holds."""
  tc, tp, dc, dp = pair
  prompts, budgets, settings = workload
  decoder = SpeculativeDecoder(tc, dc, Oracle(Exact()), 3, settings)
  keep_at = {'keep_at_B': jnp.asarray(np.arange(N_PROMPTS) % 5 - 1, jnp.int32)}
  cont = decoder.generate_continuous(tp, dp, prompts, ROWS, row_params=keep_at, max_new=budgets, buckets=None)
  _check_same(cont, _static(decoder, (tp, dp), prompts, budgets, row_params=keep_at))
  assert jax.device_get(cont.stats).kept_at_mismatch_B.sum() > 0


def test_fewer_prompts_than_rows_and_sampling(pair, workload):
  """Three prompts over four rows (padded, cut back); speculative sampling runs and respects every budget."""
  tc, tp, dc, dp = pair
  prompts, budgets, settings = workload
  decoder = SpeculativeDecoder(tc, dc, Exact(), 2, settings)
  cont = decoder.generate_continuous(tp, dp, prompts[:3], ROWS, max_new=budgets[:3], buckets=None)
  static = decoder(tp, dp, *helpers.pad(prompts[:3]), jax.random.PRNGKey(0), budgets[:3])
  assert len(cont.completions()) == 3
  for s, c in zip(static.completions(), cont.completions()):
    np.testing.assert_array_equal(c, s)
  sampler = SpeculativeDecoder(tc, dc, RejectionSampling(Sampling(temperature=1.0)), 2, settings)
  sampled = sampler.generate_continuous(tp, dp, prompts, ROWS, jax.random.PRNGKey(1), max_new=budgets, buckets=None)
  lengths = [len(c) for c in sampled.completions()]
  assert all(1 <= n <= b for n, b in zip(lengths, budgets))
  np.testing.assert_array_equal(jax.device_get(sampled.stats).generated_B, lengths)


def test_too_few_prompts_for_the_compiled_call_is_named(pair):
  tc, tp, _, _ = pair
  tokens, lengths = helpers.pad(helpers.ragged_prompts(2, tc.vocab_size))
  with pytest.raises(ValueError, match='at least as many prompts as rows'):
    AutoregressiveDecoder(tc).continuous(tp, tokens, lengths, jax.random.PRNGKey(0), rows=4)


@pytest.mark.parametrize('prefill_ahead', [0, 8])
def test_refills_on_a_data_split_mesh_gather_no_cache(pair, prefill_ahead):
  """Rows over `data`: a refill writes each row into the device that holds it. Written as one array, a row at a
  traced index made XLA all-gather both models' whole caches onto every device for every refill (60 such
  all-gathers in this loop); the compiled loop now holds none of a cache's shape (nor, prefilling ahead, the
  stage's: it is held on every data shard, as the refills read it)."""
  import re
  from cospec_jax import sharding
  from cospec_jax.decoding import prompts as prompts_lib
  tc, tp, dc, dp = pair
  mesh = sharding.make_mesh(4, 2, devices=jax.devices('cpu'))
  stp, sdp = (sharding.shard_params(p, sharding.LLAMA_RULES, mesh) for p in (tp, dp))
  decoder = SpeculativeDecoder(tc, dc, Exact(), 3, DecodeSettings(max_new_tokens=8, prefill_ahead=prefill_ahead),
                               mesh=mesh)
  tokens, lengths = prompts_lib.place(mesh, (), None, prompts_lib.pad_prompts([[3, 4, 5]] * 16, 0, buckets=None))[2]
  rng = prompts_lib.place(mesh, (), jax.random.PRNGKey(0))[1]
  hlo = SpeculativeDecoder.continuous.lower(decoder, stp, sdp, tokens, lengths, rng, rows=8).compile().as_text()
  gathered = [re.search(r'= \w+\[([\d,]*)\]', line).group(1).split(',') for line in hlo.splitlines()
              if ' all-gather(' in line]
  assert gathered  # The loop does gather small per-row arrays; the pattern reads them.
  caches = [dims for dims in gathered if len(dims) == 5 and int(dims[1]) == 8]  # [Y, B, S, C, H] over all rows.
  assert not caches, caches


@pytest.mark.parametrize('decoder_kind,prefill_ahead', [('spd', 0), ('target_only', 0), ('spd', 8)])
def test_refills_copy_no_cache(pair, decoder_kind, prefill_ahead):
  """A refill writes its rows into the caches in place. With the refill sizes as branches of one switch (each
  writing the caches), XLA copied every cache whole inside the loop, twice per refill (before the write and after
  the switch; in this loop's text 4 copies per cache leaf, one in each size's branch and one after the switch); with
  one conditional per size, each writing or passing the state through, the compiled loop copies a cache only where
  it is made, before the loop. Prefilling ahead, the stage (8 rows too, so the pattern reads its copies as well) is
  refilled in a conditional of its own and read by the refills, and neither it nor the caches are copied."""
  import re
  tc, tp, dc, dp = pair
  # Sizes 1, 2, 4: no refill reads all 8 rows.
  settings = DecodeSettings(max_new_tokens=8, refills_per_step=4, prefill_ahead=prefill_ahead)
  tokens, lengths = helpers.pad([[3, 4, 5]] * 16)
  rng = jax.random.PRNGKey(0)
  if decoder_kind == 'spd':
    decoder = SpeculativeDecoder(tc, dc, Exact(), 3, settings)
    lowered = SpeculativeDecoder.continuous.lower(decoder, tp, dp, tokens, lengths, rng, rows=8)
  else:
    decoder = AutoregressiveDecoder(tc, settings=settings)
    lowered = AutoregressiveDecoder.continuous.lower(decoder, tp, tokens, lengths, rng, rows=8)
  computation, copies = None, {}
  for line in lowered.compile().as_text().splitlines():
    if line and not line.startswith(' '):  # A computation's header: `%name (...` or `ENTRY %name (...`.
      computation = line.split()[1] if line.startswith('ENTRY') else line.split()[0]
    cache = re.search(r'= f32\[(\d+),8,(\d+),(\d+),(\d+)\]\{[\d,]*\} copy\(', line)  # [Y, B, S, C, H], every row.
    if cache:
      copies[computation] = copies.get(computation, 0) + 1
  entry = [c for c in copies if c.startswith('%main')]
  assert entry, copies  # The caches are made (and copied) before the loop: the pattern reads them.
  assert set(copies) == set(entry), copies


@pytest.mark.parametrize('shape,prefill_ahead', [((4, 1), 0), ((2, 4), 0), ((2, 4), 3)])
def test_sharded_continuous_equals_one_device(pair, workload, shape, prefill_ahead):
  """Rows over `data`, weights and caches over `model`: the refilled loop gives the one-device tokens and stats,
  also with prompts prefilled ahead (the stage on every data shard, each device copying into the rows it holds)."""
  from cospec_jax import sharding
  tc, tp, dc, dp = pair
  prompts, budgets, settings = workload
  settings = dataclasses.replace(settings, prefill_ahead=prefill_ahead)
  want = SpeculativeDecoder(tc, dc, Exact(), 3, settings).generate_continuous(tp, dp, prompts, ROWS, max_new=budgets,
                                                                             buckets=None)
  mesh = sharding.make_mesh(*shape, devices=jax.devices('cpu'))
  stp, sdp = (sharding.shard_params(p, sharding.LLAMA_RULES, mesh) for p in (tp, dp))
  got = SpeculativeDecoder(tc, dc, Exact(), 3, settings, mesh=mesh).generate_continuous(
      stp, sdp, prompts, ROWS, max_new=budgets, buckets=None)
  for w, g in zip(want.completions(), got.completions()):
    np.testing.assert_array_equal(g, w)
  np.testing.assert_array_equal(np.asarray(got.stats.target_calls_B), np.asarray(want.stats.target_calls_B))
  np.testing.assert_array_equal(np.asarray(got.sources_BxT), np.asarray(want.sources_BxT))
