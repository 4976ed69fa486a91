"""Test-wide guard rails: implicit rank promotion is an error (a silent broadcast hides shape bugs)."""

import jax

jax.config.update('jax_numpy_rank_promotion', 'raise')
