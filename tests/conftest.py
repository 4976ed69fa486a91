"""Test-wide settings: 8 simulated CPU devices (for the mesh tests; everything else runs on the first), and implicit
rank promotion as an error (a silent broadcast hides shape bugs)."""

import os

if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8').strip()

import jax  # noqa: E402  (after XLA_FLAGS, which the CPU backend reads when it starts)
import pytest  # noqa: E402

jax.config.update('jax_numpy_rank_promotion', 'raise')


@pytest.fixture(autouse=True, scope='module')
def _release_compiled_programs():
  """Drops every compiled program after each test module. Each pytest-xdist worker runs half the suite or more in one
  process, and with thousands of XLA executables kept alive the CPU compiler crashed (SIGSEGV, in a compile late in a
  full run on 2026-12-02) where the same module alone passes."""
  yield
  jax.clear_caches()
