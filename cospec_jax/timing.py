"""Wall-clock rounds for comparing compiled programs on a noisy machine, shared by the table (evaluate.time_rows) and
the decode benchmark (decode_benchmark.run).

Each round runs every pass once, interleaved call by call: at each turn every unfinished pass runs its next call, in
an order shuffled turn by turn. So a slow spell of the machine (seconds long on a shared VM) falls on neighbouring
calls of every pass rather than on whichever pass it met, and no pass always runs after the same one: on the 2-core
development VM a call ran faster after some programs than after others (the table's CoSpec step rate against SPD's at
batch 1 read 0.89 with SPD always right after target-only and 0.97 with CoSpec there, 2026-12-04). Callers take each
call's fastest round.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Sequence, TypeVar

import jax
import numpy as np

T = TypeVar('T')


def shuffled_rounds(passes: Sequence[Callable[[], Iterator[T]]], rounds: int, seed: int = 0) -> list[list[list[T]]]:
  """Runs `rounds` rounds of the passes: a pass is a function returning an iterator whose every `next` runs one call
  (and times it, as the caller chooses); each turn runs every unfinished pass's next call, in an order drawn from
  `seed` turn by turn. Returns calls[p][r]: pass p's items of round r, in call order."""
  order = np.random.RandomState(seed)
  calls = [[] for _ in passes]
  for _ in range(rounds):
    running = {p: make_calls() for p, make_calls in enumerate(passes)}
    for p in running:
      calls[p].append([])
    while running:
      for p in order.permutation(sorted(running)).tolist():
        item = next(running[p], None)
        if item is None:
          del running[p]
        else:
          calls[p][-1].append(item)
  return calls


def one_call(fn: Callable[[], Any]) -> Callable[[], Iterator[tuple[float, Any]]]:
  """A pass of a single call: `fn()`, blocked until its result is ready, as (seconds, result)."""
  def calls():
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    yield time.perf_counter() - t0, out
  return calls
