"""Acceptance rules by their config name: the one module that knows every family (the lossless rules of rules.py,
the relaxed ones of relaxed.py, CoSpec's of cospec.py). It sits above them, so none of them imports it."""

from __future__ import annotations

from cospec_jax.decoding import cospec, relaxed
from cospec_jax.decoding.rules import Exact, RejectionSampling

RULES = {'exact': Exact, 'rejection_sampling': RejectionSampling, 'topk': relaxed.TopK, 'threshold': relaxed.Threshold,
         'fly': relaxed.Fly, 'judge': relaxed.Judge, 'oracle': relaxed.Oracle, 'cospec': cospec.CoSpec}


def make_rule(name: str, **kwargs):
  """Builds a rule by its config name; `kwargs` go to its constructor."""
  if name not in RULES:
    raise ValueError(f'Unknown acceptance rule {name!r}; available: {sorted(RULES)}.')
  return RULES[name](**kwargs)
