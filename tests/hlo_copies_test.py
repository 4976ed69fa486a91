"""experiments/tpu/hlo_copies.py: which KV-cache copies of a compiled program run per step, per refill and per call."""

import importlib.util
import os

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'experiments/tpu/hlo_copies.py')
_SPEC = importlib.util.spec_from_file_location('hlo_copies', _PATH)
hlo_copies = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(hlo_copies)

# A program shaped like the decoders' (cache of 10 slots, f32[4,2,10,8] = 2,560 bytes): a prefill loop of 3 chunks
# around a 4-layer scan that copies the cache once per layer through a data-movement fusion, a decode loop without a
# constant trip count around a 4-layer scan with one plain copy, one into on-chip memory (S(1)) and one nested in a
# compute fusion (not materialised on its own), a conditional in the decode loop whose branches copy once and twice, and a copy after.
HLO = """HloModule m

%copy_fusion (param_0: f32[4,2,10,8]) -> f32[4,2,10,8] {
  %param_0 = f32[4,2,10,8]{3,2,1,0} parameter(0)
  %copy.1 = f32[4,2,10,8]{2,3,1,0} copy(%param_0)
  ROOT %bitcast.1 = f32[4,2,10,8]{2,3,1,0} bitcast(%copy.1)
}

%dot_fusion (param_0.1: f32[4,2,10,8]) -> f32[4,2,10,8] {
  %param_0.1 = f32[4,2,10,8]{3,2,1,0} parameter(0)
  %copy.2 = f32[4,2,10,8]{2,3,1,0} copy(%param_0.1)
  ROOT %multiply.1 = f32[4,2,10,8]{2,3,1,0} multiply(%copy.2, %copy.2)
}

%layers_cond (p.1: (s32[], f32[4,2,10,8])) -> pred[] {
  %p.1 = (s32[], f32[4,2,10,8]) parameter(0)
  %gte.1 = s32[] get-tuple-element(%p.1), index=0
  %constant.4 = s32[]{:T(128)} constant(4)
  ROOT %lt.1 = pred[] compare(%gte.1, %constant.4), direction=LT
}

%prefill_layers (p.2: (s32[], f32[4,2,10,8])) -> (s32[], f32[4,2,10,8]) {
  %p.2 = (s32[], f32[4,2,10,8]) parameter(0)
  %gte.2 = f32[4,2,10,8]{3,2,1,0} get-tuple-element(%p.2), index=1
  %fusion.1 = f32[4,2,10,8]{2,3,1,0} fusion(%gte.2), kind=kLoop, calls=%copy_fusion
  ROOT %t.2 = (s32[], f32[4,2,10,8]) tuple(%gte.2, %fusion.1)
}

%chunks_cond (p.3: (s32[], f32[4,2,10,8])) -> pred[] {
  %p.3 = (s32[], f32[4,2,10,8]) parameter(0)
  %gte.3 = s32[] get-tuple-element(%p.3), index=0
  %constant.3 = s32[]{:T(128)} constant(3)
  ROOT %lt.3 = pred[] compare(%gte.3, %constant.3), direction=LT
}

%prefill_chunks (p.4: (s32[], f32[4,2,10,8])) -> (s32[], f32[4,2,10,8]) {
  %p.4 = (s32[], f32[4,2,10,8]) parameter(0)
  ROOT %while.1 = (s32[], f32[4,2,10,8]) while(%p.4), condition=%layers_cond, body=%prefill_layers
}

%decode_layers (p.5: (s32[], f32[4,2,10,8])) -> (s32[], f32[4,2,10,8]) {
  %p.5 = (s32[], f32[4,2,10,8]) parameter(0)
  %gte.5 = f32[4,2,10,8]{3,2,1,0} get-tuple-element(%p.5), index=1
  %copy.3 = f32[4,2,10,8]{2,3,1,0} copy(%gte.5)
  %copy.9 = f32[4,2,10,8]{2,3,1,0:T(8,128)S(1)} copy(%gte.5)
  %fusion.2 = f32[4,2,10,8]{2,3,1,0} fusion(%copy.9), kind=kOutput, calls=%dot_fusion
  ROOT %t.5 = (s32[], f32[4,2,10,8]) tuple(%copy.3, %fusion.2)
}

%refill_one (p.6: f32[4,2,10,8]) -> f32[4,2,10,8] {
  %p.6 = f32[4,2,10,8]{3,2,1,0} parameter(0)
  ROOT %copy.4 = f32[4,2,10,8]{2,3,1,0} copy(%p.6)
}

%refill_two (p.7: f32[4,2,10,8]) -> f32[4,2,10,8] {
  %p.7 = f32[4,2,10,8]{3,2,1,0} parameter(0)
  %copy.5 = f32[4,2,10,8]{2,3,1,0} copy(%p.7)
  ROOT %copy.6 = f32[4,2,10,8]{3,2,1,0} copy(%copy.5)
}

%decode_cond (p.8: (s32[], f32[4,2,10,8], pred[])) -> pred[] {
  %p.8 = (s32[], f32[4,2,10,8], pred[]) parameter(0)
  ROOT %gte.8 = pred[] get-tuple-element(%p.8), index=2
}

%decode_body (p.9: (s32[], f32[4,2,10,8], pred[])) -> (s32[], f32[4,2,10,8], pred[]) {
  %p.9 = (s32[], f32[4,2,10,8], pred[]) parameter(0)
  %while.2 = (s32[], f32[4,2,10,8]) while(%p.9), condition=%layers_cond, body=%decode_layers
  %gte.9 = f32[4,2,10,8]{3,2,1,0} get-tuple-element(%while.2), index=1
  %idx = s32[] get-tuple-element(%p.9), index=0
  %conditional.1 = f32[4,2,10,8]{3,2,1,0} conditional(%idx, %gte.9, %gte.9), branch_computations={%refill_one, %refill_two}
  ROOT %t.9 = (s32[], f32[4,2,10,8], pred[]) tuple(%idx, %conditional.1, %idx)
}

ENTRY %main (cache: f32[4,2,10,8]) -> f32[4,2,10,8] {
  %cache = f32[4,2,10,8]{3,2,1,0} parameter(0)
  %while.3 = (s32[], f32[4,2,10,8]) while(%cache), condition=%chunks_cond, body=%prefill_chunks
  %while.4 = (s32[], f32[4,2,10,8], pred[]) while(%while.3), condition=%decode_cond, body=%decode_body
  %gte.10 = f32[4,2,10,8]{3,2,1,0} get-tuple-element(%while.4), index=1
  %copy.7 = f32[4,2,10,8]{2,3,1,0} copy(%gte.10)
  %small = f32[2,10]{1,0} copy(%gte.10)
  ROOT %copy.8 = f32[4,2,12,8]{2,3,1,0} copy(%gte.10)
}
"""
COPY = 4 * 2 * 10 * 8 * 4


def test_copies_are_counted_where_and_as_often_as_they_run():
  got = hlo_copies.cache_copies(HLO, cache_slots=10, min_bytes=1000)
  # Per call: the prefill's fusion, 3 chunks x 4 layers; the copy after the decode loop once. The [2, 10] copy is under
  # min_bytes and the [.., 12, ..] one is not cache-sized.
  assert got['per_call'] == {'copies': 13, 'bytes': 13 * COPY}
  # Per step: the decode scan's plain copy, 4 layers; the one into on-chip memory apart; the copy inside the compute
  # fusion is not materialised alone.
  assert got['per_step'] == {'copies': 4, 'bytes': 4 * COPY}
  assert got['per_step_on_chip'] == {'copies': 4, 'bytes': 4 * COPY}
  # Per refill: the costlier branch (two copies), not both branches.
  assert got['per_refill'] == {'copies': 2, 'bytes': 2 * COPY}
  assert {i['name'] for i in got['items']} == {'%fusion.1', '%copy.3', '%copy.9', '%copy.4', '%copy.5', '%copy.6',
                                               '%copy.7'}
  assert hlo_copies.summary(got).startswith('per step: 4 copies')


def test_nothing_cache_sized_is_none():
  got = hlo_copies.cache_copies(HLO, cache_slots=11)
  assert all(got[k] == {'copies': 0, 'bytes': 0} for k in ('per_step', 'per_refill', 'per_call'))
  assert hlo_copies.summary(got) == 'none'
