"""Test-wide settings: 8 simulated CPU devices (for the mesh tests; everything else runs on the first), and implicit
rank promotion as an error (a silent broadcast hides shape bugs)."""

import os

if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8').strip()

import jax  # noqa: E402  (after XLA_FLAGS, which the CPU backend reads when it starts)

jax.config.update('jax_numpy_rank_promotion', 'raise')
