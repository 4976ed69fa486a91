"""The KV-cache copies XLA put into a compiled program, read from its optimized HLO text, and how often each runs.

XLA chooses the memory layout of every array inside a program. Where the layout an op wants (the attention product
reads a layer's keys with positions before heads, say) differs from the one the cache is carried in, it inserts a
copy that moves the data into the other layout. A roofline projection that counts each call's weights and KV cache
read once (compile_check.py's step projection) leaves those copies out; this module counts them.

A *cache copy* is an instruction of a non-fused computation that moves data only (a `copy`, or a loop fusion made of
copies, transposes, bitcasts, reshapes and slices) and whose result has an axis as long as the cache (`cache_slots`)
and at least `min_bytes`. How often it runs comes from the loops around it: a while loop whose condition compares its
counter with a constant (a scan over layers, the draft's proposals, the prefill's chunks) runs that many times; the
outermost loop without one is the decode loop (a loop inside it without one, as a refill's prefill chunks, counts
once: a lower bound). So each copy is counted
  per step:    inside the decode loop (and in no conditional there), times the constant trips of the loops between;
  per refill:  inside a conditional of the decode loop (continuous batching's refills): the branch that copies the
               most (a refill runs one branch: one size of refill);
  per call:    outside any decode loop (the prefill, the setup), times the constant trips of its loops.
Bytes are the copy's result (what it writes to HBM; it reads as much). A copy whose result lies in another memory
space (`S(n)` in its layout: on a TPU the core's on-chip memory) writes no HBM and is counted apart (`per_step_on_chip`,
...): it is how a layer's cache slice is read into the core, re-laid out on the way. Compiled, not run: whether a
copy costs its bytes at HBM bandwidth, or overlaps with other work, only a TPU can say.
"""

from __future__ import annotations

import collections
import math
import re
from typing import Optional

_HEADER = re.compile(r'^(?:ENTRY )?(%[\w.\-]+) \(.*\{\s*$')
_INSTR = re.compile(r'^\s*(?:ROOT )?(%[\w.\-]+) = (\w+)\[([\d,]*)\]\{([^}]*)\}\S* ([\w\-]+)\(')
_CALLEES = re.compile(r'\b(calls|body|condition|to_apply|true_computation|false_computation)=(%[\w.\-]+)')
_BRANCHES = re.compile(r'branch_computations=\{([^}]*)\}')
_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 'bf16': 2, 'f16': 2, 's16': 2, 'u16': 2, 'f32': 4, 's32': 4, 'u32': 4,
          'f64': 8, 's64': 8, 'u64': 8}
_DATA_MOVEMENT = {'parameter', 'copy', 'transpose', 'bitcast', 'reshape', 'slice', 'dynamic-slice', 'constant'}


def _computations(hlo_text: str) -> dict[str, list[str]]:
  """{computation name: its instruction lines}."""
  comps, current = {}, None
  for line in hlo_text.splitlines():
    header = _HEADER.match(line)
    if header:
      current = header.group(1)
      comps[current] = []
    elif line.startswith('}'):
      current = None
    elif current is not None:
      comps[current].append(line)
  return comps


def _trip_count(condition_lines: list[str]) -> Optional[int]:
  """A loop's trips when its condition compares the counter with one integer constant (`i < N`), else None."""
  constants = [int(m.group(1)) for line in condition_lines
               for m in [re.search(r's32\[\]\{[^}]*\} constant\((\d+)\)', line)] if m]
  compares = [line for line in condition_lines if ' compare(' in line and 'direction=LT' in line]
  return constants[0] if len(constants) == 1 and len(compares) == 1 else None


def _is_data_movement(lines: list[str]) -> bool:
  ops = {m.group(5) for line in lines for m in [_INSTR.match(line)] if m}
  return bool(ops) and ops <= _DATA_MOVEMENT and bool(ops & {'copy', 'transpose'})


def cache_copies(hlo_text: str, cache_slots: int, min_bytes: int = 1 << 20) -> dict:
  """Counts the cache copies of a compiled program's HLO text (module docstring).

  Returns:
    {'per_step', 'per_refill', 'per_call': {'copies': copies run, 'bytes': bytes they write to HBM} per step /
     refill (its costliest branch) / call, the same with '_on_chip' for copies into another memory space where there
     are any, and 'items': [{'name', 'shape', 'bytes', 'where', 'times', 'branch'}]} where `times` is how often one
     step / refill / call runs the copy (the constant trips of the loops around it).
  """
  comps = _computations(hlo_text)
  fused, parent = set(), {}  # parent[computation] = (kind, instruction line) of the op that calls it.
  for name, lines in comps.items():
    for line in lines:
      for kind, callee in _CALLEES.findall(line):
        if kind == 'calls' and ' fusion(' in line:
          fused.add(callee)
        parent.setdefault(callee, (kind, line, name))
      branches = _BRANCHES.search(line)
      if branches:
        for callee in re.findall(r'%[\w.\-]+', branches.group(1)):
          parent.setdefault(callee, ('branch', line, name))

  def context(comp: str) -> tuple[str, int, Optional[str]]:
    """(where, times, branch) of an instruction of `comp`, from the loops and conditionals around it: the outermost
    loop without a constant trip count is the decode loop; `branch` is the conditional branch inside it, if any."""
    chain = []  # (trips or None, branch callee or None), innermost first.
    while comp in parent:
      callee = comp
      kind, line, comp = parent[comp]
      if kind == 'body':
        chain.append((_trip_count(comps.get(re.search(r'condition=(%[\w.\-]+)', line).group(1), [])), None))
      elif kind in ('branch', 'true_computation', 'false_computation'):
        chain.append((1, callee))
    dynamic = [i for i, (trips, _) in enumerate(chain) if trips is None]
    inside = chain[:dynamic[-1]] if dynamic else chain
    times = 1
    for trips, _ in inside:
      times *= trips or 1  # A loop inside the decode loop without a constant count (a refill's chunks): once.
    branches = [b for _, b in inside if b]
    if not dynamic:
      return 'per_call', times, None
    return ('per_refill', times, branches[-1]) if branches else ('per_step', times, None)

  result = {k: {'copies': 0, 'bytes': 0} for k in ('per_step', 'per_call')}
  refills = collections.defaultdict(lambda: {'copies': 0, 'bytes': 0})  # By (where, branch).
  items = []
  for comp, lines in comps.items():
    if comp in fused or comp in parent and parent[comp][0] in ('condition', 'to_apply'):
      continue
    for line in lines:
      m = _INSTR.match(line)
      if not m:
        continue
      name, dtype, dims, layout, op = m.groups()
      shape = [int(d) for d in dims.split(',') if d]
      if cache_slots not in shape or dtype not in _BYTES:
        continue
      if op == 'fusion':
        callee = re.search(r'calls=(%[\w.\-]+)', line)
        if not callee or ' kind=kLoop' not in line or not _is_data_movement(comps.get(callee.group(1), [])):
          continue
      elif op != 'copy':
        continue
      nbytes = _BYTES[dtype] * math.prod(shape)
      if nbytes < min_bytes:
        continue
      where, times, branch = context(comp)
      space = re.search(r'S\((\d+)\)', layout)
      if space and space.group(1) != '0':  # Into an on-chip memory (TPU VMEM): no HBM write.
        where = f'{where}_on_chip'
      if where.startswith('per_refill'):
        total = refills[where, branch]
      else:
        total = result.setdefault(where, {'copies': 0, 'bytes': 0})
      total['copies'] += times
      total['bytes'] += times * nbytes
      items.append(dict(name=name, shape=shape, bytes=nbytes, where=where, times=times, branch=branch))
  for kind in ('per_refill', 'per_refill_on_chip'):
    branches = [total for (where, _), total in refills.items() if where == kind]
    if branches or kind == 'per_refill':
      result[kind] = max(branches, key=lambda c: c['bytes'], default={'copies': 0, 'bytes': 0})
  return dict(result, items=items)


def summary(copies: dict) -> str:
  """One line: copies and GiB written per step, per refill and per call."""
  parts = []
  for where in ('per_step', 'per_refill', 'per_call', 'per_step_on_chip', 'per_refill_on_chip', 'per_call_on_chip'):
    c = copies.get(where)
    if c and c['copies']:
      parts.append(f'{where.replace("_", " ")}: {c["copies"]} copies, {c["bytes"] / 2**30:.2f} GiB')
  return '; '.join(parts) or 'none'

