"""Compiles the paper pairs' programs for TPU topologies without a TPU, and projects their decode speed.

  python experiments/tpu/compile_check.py --config=configs/tpu_compile.py:bars [--only=GLOB] [--out=PATH]
  python experiments/tpu/compile_check.py --table      # the markdown tables of experiments/tpu/README.md

Needs libtpu (jax[tpu] at the pinned jax version, in a virtualenv of its own: configs/tpu_compile.py says how);
without it this fails, naming the fix. Weights are abstract (jax.ShapeDtypeStruct with the NamedSharding the rules
give, bfloat16): shapes come from the pairs' config.json (experiments/tpu/data/qwen2.5_configs.json).

A cell is PAIR/TOPOLOGY/B<batch>/P<prompt>/PROGRAM:
  target     the target-only decode loop (AutoregressiveDecoder), greedy, max_new_tokens per row;
  spd        the speculative loop (SpeculativeDecoder, Exact rule, gamma);
  continuous the speculative loop with continuous batching: config.workload.n_prompts prompts through B rows, a
             finished row refilled inside the loop (SpeculativeDecoder.continuous);
  cospec     the CoSpec loop as REINFORCE rollouts run it (sampled actions, decision records);
  reinforce  the REINFORCE update of the arbiter on B rows of those records;
  step       a roofline projection of one decode step (below);
  throughput a roofline projection of static against continuous batching on a long-tailed workload (below).
For each compiled cell: per-device bytes from `memory_analysis()` (arguments, temporaries, outputs, aliased,
generated code) against the chip's HBM, the compile time, and for the decode loops the KV-cache copies XLA put into
the program, read from its compiled text with how often each runs (per decode step, per refill, per call:
`hlo_copies.py`). Results go to the json after every cell; a cell already there is skipped, so an interrupted run
resumes (`--recompute` compiles the selected cells again).

The step projection: XLA's `cost_analysis()` counts a loop body once (a scan over layers, a while loop), so the flops
of one forward call are measured on unrolled 1- and 2-layer versions of each model and extrapolated linearly to its
depth (every layer costs the same); the bytes are the device's weights plus its whole KV cache (what a decode call
reads from HBM; XLA's own count is kept beside them). A call's time is max(bytes / HBM bandwidth, flops / bf16 peak)
with the chip's published figures (experiments/tpu/data/chips.json); target-only decoding takes one 1-token target call per
token, an SPD step a 2-token draft catch-up, gamma - 1 one-token draft calls and one (gamma + 1)-token target call
for `tau` tokens (an assumption, in the config). Projected, not run.

The throughput projection: `config.workload` budgets (log-normal, as the CPU throughput benchmark draws them) give
each prompt its steps (answer tokens for target-only, ceil(tokens / tau) target calls for SPD);
`decoding.continuous.schedule_steps` counts the steps of static batching (chunks of B prompts, each for its longest)
and of continuous batching (freed rows refilled after a step, up to DecodeSettings.refills_per_step). Time = steps x
the step cell's step time + prefills: one P-token call on B rows per static chunk (and once to start continuous
batching), and per refill call (a step's freed rows together, padded to the smallest of 1, 2, 4, ... rows that
holds them: `schedule_steps` counts the calls of each size) one P-token call on those K rows, which every data
shard computes whole, as XLA compiles the refill's prefill on a data-split mesh (flops x K x data / B, bytes = weights +
K x data / B of the cache). Projected, not run.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, 'configs')]

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

import hlo_copies  # noqa: E402  (experiments/tpu/, the script's own directory)

_CONFIG = config_flags.DEFINE_config_file('config', os.path.join(ROOT, 'configs/tpu_compile.py'),
                                          'configs/tpu_compile.py[:bars|:smoke].')
_ONLY = flags.DEFINE_string('only', '*', 'Glob on cell names PAIR/TOPOLOGY/B<n>/P<n>/PROGRAM: compile only these.')
_OUT = flags.DEFINE_string('out', None, 'Results json (default: config.out).')
_TABLE = flags.DEFINE_bool('table', False, 'Print the markdown table of the results json and exit.')
_REQUIRE_FIT = flags.DEFINE_bool('require_fit', False, 'Exit non-zero unless every selected compiled cell fits HBM.')
_RECOMPUTE = flags.DEFINE_bool('recompute', False, 'Compile the cells --only selects even if the json has them.')

DATA = os.path.join(ROOT, 'experiments/tpu/data')
GIB = 2**30
# The smoke pair: tiny Qwen2-shaped models whose heads split like the real ones (kv heads fewer than the axis).
TINY = {
    'tiny-target': dict(model_type='qwen2', hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                        num_attention_heads=8, num_key_value_heads=2, vocab_size=1024, tie_word_embeddings=False),
    'tiny-draft': dict(model_type='qwen2', hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, vocab_size=1024, tie_word_embeddings=True),
}


def _load_json(path):
  with open(path) as f:
    return json.load(f)


def _write_json(path, obj):
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=1, sort_keys=True)
    f.write('\n')
  os.replace(tmp, path)


def _rss_gib():
  """(current, peak) resident memory of this process, GiB."""
  with open('/proc/self/status') as f:
    current = next(int(line.split()[1]) for line in f if line.startswith('VmRSS'))
  return current / 2**20, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class Checker:
  """Everything about one (pair, topology): abstract devices, mesh, model configs and abstract parameters."""

  def __init__(self, config, pair: str, topology: str):
    import jax
    from jax.experimental import topologies

    import paper
    import tpu_compile
    from cospec_jax import sharding
    from cospec_jax.models import hf_checkpoint

    name, chip_config, chip = tpu_compile.TOPOLOGIES[topology]
    try:
      kwargs = {'chip_config_name': chip_config} if chip_config else {}
      self.devices = topologies.get_topology_desc(topology_name=name, platform='tpu', **kwargs).devices
    except Exception as e:  # libtpu missing or too old: name the fix.
      raise RuntimeError(f'Cannot describe TPU topology {name!r} ({e}). Run this in a virtualenv with libtpu: '
                         'pip install -r requirements.txt "jax[tpu]==0.10.2" (see configs/tpu_compile.py).') from e
    self.chip = _load_json(os.path.join(DATA, 'chips.json'))[chip]
    shapes = TINY if pair == 'tiny' else _load_json(config.models or os.path.join(DATA, 'qwen2.5_configs.json'))
    if pair == 'tiny':
      target_name, draft_name, model_axis = 'tiny-target', 'tiny-draft', 4
    else:
      target_name, draft_name, axes = paper.PAIRS[pair]
      model_axis = axes[topology][0]  # (model axis, rows per decode call)
    self.mesh = sharding.make_mesh(-1, model_axis, devices=self.devices)
    self.target, self.draft = (
        hf_checkpoint.config_from_hf(shapes[n], 'bfloat16', 'bfloat16').replace(scan_layers=True)
        for n in (target_name, draft_name))
    self.vocab_size = min(self.target.vocab_size, self.draft.vocab_size)  # Heads padded differently (Qwen2.5).
    self.target_params = sharding.abstract_params(self.target, sharding.LLAMA_RULES, self.mesh)
    self.draft_params = sharding.abstract_params(self.draft, sharding.LLAMA_RULES, self.mesh)
    self.config = config
    self.jax = jax

  def describe(self) -> dict:
    return dict(mesh=dict(self.mesh.shape), devices=len(self.devices), hbm_gib=self.chip['hbm_gib'],
                hosts=len({d.process_index for d in self.devices}),
                target_kv_repeat=self._sharding().kv_repeat(self.target, self.mesh),
                draft_kv_repeat=self._sharding().kv_repeat(self.draft, self.mesh))

  @staticmethod
  def _sharding():
    from cospec_jax import sharding
    return sharding

  def _rows(self, shape, dtype):
    from jax.sharding import NamedSharding, PartitionSpec
    return self.jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(self.mesh, PartitionSpec('data')))

  def _replicated(self, tree):
    from jax.sharding import NamedSharding, PartitionSpec
    rep = NamedSharding(self.mesh, PartitionSpec())
    return self.jax.tree_util.tree_map(lambda x: self.jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), tree)

  def _policy(self):
    from cospec_jax.decoding.cospec import ArbiterPolicy, init_policy
    policy = ArbiterPolicy(self.config.policy_hidden, self.config.policy_projection)
    params = self.jax.eval_shape(lambda: init_policy(policy, self.target.d_model, self.draft.d_model,
                                                     self.jax.random.PRNGKey(0)))
    return policy, self._replicated(params)

  def _decoder(self, program: str, B: int):
    from cospec_jax.decoding import AutoregressiveDecoder, CoSpec, DecodeSettings, Exact, SpeculativeDecoder
    c = self.config
    settings = DecodeSettings(max_new_tokens=c.max_new_tokens, eos_ids=(1,), vocab_size=self.vocab_size)
    if program == 'target':
      return AutoregressiveDecoder(self.target, settings=settings, mesh=self.mesh), None
    if program == 'spd':
      return SpeculativeDecoder(self.target, self.draft, Exact(), c.gamma, settings, mesh=self.mesh), None
    policy, policy_params = self._policy()
    import jax.numpy as jnp
    rule_params = {'policy': policy_params, 'lam': self._replicated(self.jax.ShapeDtypeStruct((B,), jnp.float32))}
    return SpeculativeDecoder(self.target, self.draft, CoSpec(Exact(), policy, sample_actions=True), c.gamma,
                              settings, max_decisions=c.max_decisions, mesh=self.mesh), rule_params

  def buffer_length(self, program: str, P: int) -> int:
    """Cache slots of a cell's decode loop: its decoder's buffer for prompts padded to P."""
    return self._decoder('target' if program == 'target' else 'spd', 1)[0].buffer_length(P)

  def lower(self, program: str, B: int, P: int):
    """The lowered program of a cell (not yet compiled)."""
    import jax.numpy as jnp
    tokens, lengths = self._rows((B, P), jnp.int32), self._rows((B,), jnp.int32)
    rng = self._replicated(self.jax.ShapeDtypeStruct((2,), jnp.uint32))
    if program == 'reinforce':
      import optax
      from cospec_jax.train import reinforce
      decoder, rule_params = self._decoder('cospec', B)
      records = self.jax.eval_shape(lambda p: decoder._empty_records(B, p), rule_params)  # pylint: disable=protected-access
      records = self.jax.tree_util.tree_map(lambda x: self._rows(x.shape, x.dtype), records)
      optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-4))  # As train/arbiter.py builds it.
      policy, params = self._policy()
      opt_state = self._replicated(self.jax.eval_shape(optimizer.init, params))
      update = reinforce.make_update(policy, optimizer, 0.0, self.mesh)
      return update.lower(params, opt_state, records, self._rows((B,), jnp.float32))
    if program == 'continuous':
      decoder, _ = self._decoder('spd', B)
      N = self.config.workload.n_prompts
      tokens_NxP, lengths_N, max_new_N = self._replicated((self.jax.ShapeDtypeStruct((N, P), jnp.int32),
                                                           self.jax.ShapeDtypeStruct((N,), jnp.int32),
                                                           self.jax.ShapeDtypeStruct((N,), jnp.int32)))
      return type(decoder).continuous.lower(decoder, self.target_params, self.draft_params, tokens_NxP, lengths_N, rng,
                                            max_new_N, rows=B)
    decoder, rule_params = self._decoder(program, B)
    if program == 'target':
      return type(decoder).__call__.lower(decoder, self.target_params, tokens, lengths, rng)
    return type(decoder).__call__.lower(decoder, self.target_params, self.draft_params, tokens, lengths, rng, None,
                                        rule_params)

  def call_cost(self, model, n_tokens: int, B: int, S: int) -> dict:
    """Per-device cost of one forward call of `n_tokens` per row into a cache of S slots.

    flops: XLA's count for unrolled 1- and 2-layer versions of the model, extrapolated to its depth. bytes: what a
    decode call must read from HBM, from the shard shapes: this device's weights and its whole KV cache (attention
    reads every slot). XLA's own 'bytes accessed' is kept as `xla_bytes` for reference: it charges in-place cache
    updates and fusion operands as whole reads, several times the weights on these programs.
    """
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding
    from cospec_jax import sharding
    from cospec_jax.models import transformer
    def abstract(depth):
      m = sharding.for_mesh(model.replace(n_layers=depth, scan_layers=False), self.mesh)
      params = sharding.abstract_params(m, sharding.LLAMA_RULES, self.mesh)
      cache_sharding = NamedSharding(self.mesh, sharding.cache_spec(m.cache_heads, self.mesh))
      cache = self.jax.tree_util.tree_map(
          lambda x: self.jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=cache_sharding),
          self.jax.eval_shape(lambda: transformer.init_cache(m, B, S)))
      return m, params, cache

    costs = []
    for depth in (1, 2):
      m, params, cache = abstract(depth)
      tokens = self._rows((B, n_tokens), jnp.int32)

      def call(params, tokens, cache, m=m):
        positions = jnp.broadcast_to(S - n_tokens - 1 + jnp.arange(n_tokens, dtype=jnp.int32), tokens.shape)
        logits, _, cache = transformer.apply(m, params, tokens, positions, cache)
        return jnp.argmax(logits, -1), sharding.constrain_cache(cache, self.mesh)

      compiled = self.jax.jit(call, donate_argnums=2).lower(params, tokens, cache).compile()
      cost = compiled.cost_analysis()
      cost = cost[0] if isinstance(cost, (list, tuple)) else cost
      costs.append((float(cost.get('flops', 0.0)), float(cost.get('bytes accessed', 0.0))))
    (f1, b1), (f2, b2) = costs
    Y = model.n_layers
    _, params, cache = abstract(Y)  # Only the shapes: the bytes one call reads.
    shard_bytes = lambda x: int(np.prod(x.sharding.shard_shape(x.shape))) * x.dtype.itemsize  # noqa: E731
    weights = sum(shard_bytes(x) for x in self.jax.tree_util.tree_leaves(params))
    kv = sum(shard_bytes(x) for x in self.jax.tree_util.tree_leaves(cache))
    return {'flops': f1 + (Y - 1) * (f2 - f1), 'bytes': float(weights + kv), 'weight_bytes': weights,
            'kv_cache_bytes': kv, 'xla_bytes': b1 + (Y - 1) * (b2 - b1)}

  def seconds(self, cost: dict) -> float:
    return max(cost['bytes'] / (self.chip['hbm_gbps'] * 1e9), cost['flops'] / (self.chip['bf16_tflops'] * 1e12))


def step_projection(checker: Checker, B: int, P: int) -> dict:
  """The roofline step times of target-only decoding and SPD at B rows and prompt bucket P (module docstring)."""
  c = checker.config
  G = c.gamma
  S = checker.buffer_length('spd', P)  # The buffer every call attends over.
  calls = {'target_1': checker.call_cost(checker.target, 1, B, S),
           'target_verify': checker.call_cost(checker.target, G + 1, B, S),
           'draft_1': checker.call_cost(checker.draft, 1, B, S),
           'draft_2': checker.call_cost(checker.draft, 2, B, S)}
  t_target = checker.seconds(calls['target_1'])
  t_spd = (checker.seconds(calls['draft_2']) + (G - 1) * checker.seconds(calls['draft_1']) +
           checker.seconds(calls['target_verify']))
  return dict(calls=calls, seconds_per_step=dict(target_only=t_target, spd=t_spd),
              projected_tokens_per_s=dict(target_only=B / t_target, spd=B * c.tau / t_spd),
              projected_speedup=(B * c.tau / t_spd) / (B / t_target), tau=c.tau, gamma=G, cache_slots=S)


def throughput_projection(checker: Checker, B: int, P: int) -> dict:
  """Projected tokens/s of static and continuous batching on the config's workload (module docstring)."""
  import numpy as np
  from cospec_jax import throughput_benchmark
  from cospec_jax.decoding import DecodeSettings, continuous
  c, w = checker.config, checker.config.workload
  step = step_projection(checker, B, P)
  S = step['cache_slots']
  data = checker.mesh.shape['data']
  refills_per_step = DecodeSettings().refills_per_step
  sizes = continuous.refill_sizes(B, refills_per_step)
  # Both models' P-token call on B rows, and a refill's on K rows: the K gathered rows are computed on every data
  # shard (as XLA compiles the refill's prefill on a data-split mesh), each device writing back the rows it holds.
  prefill = {'rows': 0.0, 'refill': {k: 0.0 for k in sizes}}
  for model in (checker.target, checker.draft):
    cost = checker.call_cost(model, P, B, S)
    prefill['rows'] += checker.seconds(cost)
    for k in sizes:
      share = k * data / B  # Of a B-row call's work per device.
      prefill['refill'][k] += checker.seconds(dict(flops=cost['flops'] * share,
                                                   bytes=cost['weight_bytes'] + cost['kv_cache_bytes'] * share))
  # Only the budgets are used (the prompts are the bucket P): one-token prompts over a 4-token vocabulary.
  _, budgets_N = throughput_benchmark.workload(w.n_prompts, 1, 1, w.median_new, w.sigma, w.min_new,
                                               c.max_new_tokens, 4, w.seed)
  tokens = int(budgets_N.sum())
  out = dict(step, prefill_seconds=prefill, workload=w.to_dict(), n_prompts=w.n_prompts, generated_tokens=tokens,
             budget_median=float(np.median(budgets_N)), budget_max=int(budgets_N.max()), modes={})
  chunks = -(-w.n_prompts // B)  # Static batching's calls, each with one B-row prefill.
  for name, steps_N in (('target_only', budgets_N), ('spd', np.ceil(budgets_N / c.tau).astype(np.int64))):
    counts = continuous.schedule_steps(steps_N, B, refills_per_step)
    t_step = step['seconds_per_step'][name]
    static_s = counts['static'] * t_step + chunks * prefill['rows']
    refill_s = sum(n * prefill['refill'][k] for k, n in counts['refill_calls'].items())
    continuous_s = counts['continuous'] * t_step + prefill['rows'] + refill_s
    out['modes'][name] = dict(steps=counts, static_tokens_per_s=tokens / static_s,
                              continuous_tokens_per_s=tokens / continuous_s,
                              continuous_over_static=static_s / continuous_s)
  return out


def run_cell(checker: Checker, program: str, B: int, P: int) -> dict:
  t0 = time.time()
  if program in ('step', 'throughput'):
    projection = step_projection(checker, B, P) if program == 'step' else throughput_projection(checker, B, P)
    return dict(projection, compile_s=round(time.time() - t0, 1), host_rss_gib=round(_rss_gib()[0], 2),
                kind='projected')
  lowered = checker.lower(program, B, P)
  t1 = time.time()
  compiled = lowered.compile()
  t2 = time.time()
  copies = None
  if program != 'reinforce':  # The decode loops: the KV-cache copies XLA put in them (hlo_copies.py).
    copies = hlo_copies.cache_copies(compiled.as_text(), checker.buffer_length(program, P))
    copies.pop('items')
  m = compiled.memory_analysis()
  mem = {k: int(getattr(m, f'{k}_size_in_bytes')) for k in ('argument', 'output', 'temp', 'alias', 'generated_code')}
  total = mem['argument'] + mem['output'] + mem['temp'] - mem['alias'] + mem['generated_code']
  hbm = checker.chip['hbm_gib'] * GIB
  del compiled, lowered
  return dict(bytes_per_device=mem, total_gib=round(total / GIB, 3), hbm_gib=checker.chip['hbm_gib'],
              fits=total <= hbm, lower_s=round(t1 - t0, 1), compile_s=round(t2 - t1, 1), cache_copies=copies,
              host_rss_gib=round(_rss_gib()[0], 2), host_peak_rss_gib=round(_rss_gib()[1], 2), kind='compiled')


def failed_cell(error: str) -> dict:
  """A cell that did not compile: 'over_hbm' when XLA ran out of the chip's memory (with what it needed), else
  'failed'."""
  over = re.search(r'memory required for HLO temporaries \(([\d.]+)G\) exceeds available HBM \(([\d.]+)G\)', error)
  if over:
    return dict(error=error, fits=False, kind='over_hbm', temporaries_gib=float(over.group(1)),
                available_gib=float(over.group(2)))
  return dict(error=error, fits=False, kind='failed')


def cells(config):
  for pair in config.pairs:
    for topology in config.topologies:
      for B in config.batch_sizes:
        for P in config.prompt_lengths:
          for program in config.programs:
            yield pair, topology, B, P, program


def run(config, out: str, only: str, recompute: bool = False) -> dict:
  import jax
  results = _load_json(out) if os.path.exists(out) else {}
  results.setdefault('cells', {})
  results['meta'] = dict(jax=jax.__version__, chips=_load_json(os.path.join(DATA, 'chips.json')),
                         gamma=config.gamma, max_new_tokens=config.max_new_tokens, tau=config.tau,
                         max_decisions=config.max_decisions, note='compiled and projected, not run on a TPU')
  checkers = {}
  for pair, topology, B, P, program in cells(config):
    name = f'{pair}/{topology}/B{B}/P{P}/{program}'
    if not fnmatch.fnmatch(name, only) or name in results['cells'] and not recompute:
      continue
    if (pair, topology) not in checkers:
      checkers.clear()  # One pair/topology at a time: its abstract trees and compiled programs are freed.
      checkers[(pair, topology)] = Checker(config, pair, topology)
      results.setdefault('setups', {})[f'{pair}/{topology}'] = checkers[(pair, topology)].describe()
    print(f'{name} ...', flush=True)
    try:
      result = run_cell(checkers[(pair, topology)], program, B, P)
    except Exception as e:  # A cell that cannot compile (e.g. out of HBM) is a result too; keep going.
      result = failed_cell(f'{type(e).__name__}: {str(e)[:2000]}')
    jax.clear_caches()
    results['cells'][name] = result
    _write_json(out, results)
    print(f'  {json.dumps({k: v for k, v in result.items() if k not in ("calls",)})}', flush=True)
  return results


def _gib(x):
  return f'{x / GIB:.2f}'


def _compiled(r) -> str:
  """A compiled cell as the table shows it: per-device GiB / HBM GiB, compile seconds (or why it did not fit)."""
  if r is None:
    return ''
  if r['kind'] == 'over_hbm':
    return f'**over**: temporaries alone {r["temporaries_gib"]:.1f} > {r["available_gib"]:.2f} GiB'
  if r['kind'] == 'failed':
    return 'failed'
  return f'{r["total_gib"]:.1f} / {r["hbm_gib"]} GiB{"" if r["fits"] else " **over**"}, {r["compile_s"]:.0f} s'


def table(results) -> str:
  """Markdown: one row per pair/topology/batch/prompt, the compiled loops' per-device GiB and compile seconds,
  then the step projection; below it, one row per throughput projection."""
  rows = {}
  for name, r in results['cells'].items():
    pair, topology, B, P, program = name.split('/')
    rows.setdefault((pair, topology, int(B[1:]), int(P[1:])), {})[program] = r
  mesh_of = lambda pair, topology: results.get('setups', {}).get(f'{pair}/{topology}', {}).get('mesh', {})  # noqa
  lines = ['| pair | topology (mesh) | B | P | target-only | SPD | SPD, continuous | CoSpec | REINFORCE | projected '
           'tok/s target / SPD (speedup) |', '|---|---|---|---|---|---|---|---|---|---|']
  throughput, copies = [], []
  for (pair, topology, B, P), progs in sorted(rows.items()):
    mesh = mesh_of(pair, topology)
    where = f'| {pair} | {topology} ({mesh.get("data", "?")}x{mesh.get("model", "?")}) | {B} | {P} |'
    cols = [_compiled(progs.get(program)) for program in ('target', 'spd', 'continuous', 'cospec', 'reinforce')]
    step = progs.get('step')
    proj = ''
    if step and step['kind'] == 'projected':
      tps = step['projected_tokens_per_s']
      proj = f'{tps["target_only"]:,.0f} / {tps["spd"]:,.0f} ({step["projected_speedup"]:.2f}x)'
    lines.append(where + ' ' + ' | '.join(cols) + f' | {proj} |')
    counted = [progs.get(p, {}).get('cache_copies') for p in ('target', 'spd', 'continuous', 'cospec')]
    if any(counted):
      copies.append(where + ' ' + ' | '.join(_copies(c) for c in counted) + ' |')
    t = progs.get('throughput')
    if t and t['kind'] == 'projected':
      cells = [f'{m["static_tokens_per_s"]:,.0f} / {m["continuous_tokens_per_s"]:,.0f} '
               f'({m["continuous_over_static"]:.2f}x; steps {m["steps"]["static"]} / {m["steps"]["continuous"]})'
               for m in (t['modes']['target_only'], t['modes']['spd'])]
      throughput.append(where + f' {t["n_prompts"]} prompts, median {t["budget_median"]:.0f}, longest '
                        f'{t["budget_max"]} | ' + ' | '.join(cells) + ' |')
  if throughput:
    lines += ['', '| pair | topology (mesh) | B | P | workload (answer tokens) | target-only tok/s static / continuous '
              '| SPD tok/s static / continuous |', '|---|---|---|---|---|---|---|'] + throughput
  if copies:
    lines += ['', '| pair | topology (mesh) | B | P | KV-cache copies, GiB written to HBM per step / refill / call: '
              'target-only | SPD | SPD, continuous | CoSpec |', '|---|---|---|---|---|---|---|---|'] + copies
  return '\n'.join(lines)


def _copies(c) -> str:
  """A loop's cache copies as the table shows them: GiB per decode step / per refill / per call (hlo_copies.py)."""
  if not c:
    return ''
  hbm = ' / '.join(_gib(c[k]['bytes']) for k in ('per_step', 'per_refill', 'per_call'))
  on_chip = c.get('per_step_on_chip', {}).get('bytes', 0)
  return hbm + (f' (on chip: {_gib(on_chip)} per step)' if on_chip else '')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # The rules log every replicated dimension at INFO.
  config = _CONFIG.value
  out = os.path.join(ROOT, _OUT.value or config.out)  # An absolute path stays as it is.
  if _TABLE.value:
    print(table(_load_json(out)))
    return
  results = run(config, out, _ONLY.value, _RECOMPUTE.value)
  print(table(results))
  failed = [n for n, r in results['cells'].items() if r.get('kind') == 'failed' and fnmatch.fnmatch(n, _ONLY.value)]
  if failed:
    raise SystemExit(f'{len(failed)} cell(s) failed to compile: {failed}; their errors are in {out}.')
  over = [n for n, r in results['cells'].items() if r.get('kind') in ('compiled', 'over_hbm') and not r['fits']
          and fnmatch.fnmatch(n, _ONLY.value)]
  if _REQUIRE_FIT.value and over:
    raise SystemExit(f'{len(over)} cell(s) need more than the chip\'s HBM: {over} (figures in {out}).')


if __name__ == '__main__':
  app.run(main)
