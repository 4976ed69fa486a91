"""Decoding: one-model generation, speculative decoding, and the acceptance rules that decide what is kept."""

from cospec_jax.decoding.autoregressive import AutoregressiveDecoder, DecodeSettings
from cospec_jax.decoding.cospec import ArbiterPolicy, CoSpec
from cospec_jax.decoding.relaxed import Fly, Judge, Oracle, Threshold, TopK
from cospec_jax.decoding.registry import RULES, make_rule
from cospec_jax.decoding.rules import Block, Exact, RejectionSampling, Verdict
from cospec_jax.decoding.sampling import Greedy, Sampling
from cospec_jax.decoding.speculative import SpeculativeDecoder
from cospec_jax.decoding.state import DecodeStats, Generation
