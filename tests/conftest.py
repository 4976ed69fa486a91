"""Test-wide settings: 8 simulated CPU devices (for the mesh tests; everything else runs on the first), and implicit
rank promotion as an error (a silent broadcast hides shape bugs)."""

import os

if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8').strip()
# The tests compile far more than they run (tiny models, many programs), so XLA's CPU backend compiles them at
# optimization level 0 (less optimized machine code, the same functions computed): the table smoke test's 137
# programs compiled in 51.6 s against 103.6 s, and the whole suite (-n 2, empty cache) took 976 s of pytest against
# 1352 s at the default level, every test passing at both (2026-12-04). Subprocesses the tests start inherit it. The
# pipeline, benchmarks and experiments never read this file: they compile at XLA's default level.
if '--xla_backend_optimization_level' not in os.environ['XLA_FLAGS']:
  os.environ['XLA_FLAGS'] += ' --xla_backend_optimization_level=0'

# JAX's persistent compilation cache, in <repo>/.jax_cache (git-ignored): the tests are mostly XLA compiles of tiny
# models, and the same programs recur across modules (compiled programs are dropped after each, below), across the
# two pytest-xdist workers and in the subprocesses tests start (which inherit these variables). A cache entry is keyed
# by the program's HLO, the compile options and the jax/XLA versions, so a hit runs the executable the compile would
# have built. Programs that compile in 0.25 s or more are cached: with no minimum, the eager (un-jitted) tests wrote
# one entry per primitive, thousands, and a full cold run took 27.8 min of pytest against 23.7 without the cache
# (2026-12-04); with 0.25 s, transformer_test.py cold took 107 s against 128 s without. The size bound turns on
# JAX's file lock (`filelock`, requirements-test.txt), so two processes never read an entry while another writes it.
# A clean clone (CI) starts with an empty cache, where at 0.25 s a full run took 1347-1507 s of pytest in three
# runs (2026-12-04) against 1424 s in one without the cache: within this VM's spread. A second run is faster
# (measured with no minimum: a table smoke test 130 s cold, 35 s warm). JAX_COMPILATION_CACHE_DIR='' turns it off.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), '.jax_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.25')
os.environ.setdefault('JAX_COMPILATION_CACHE_MAX_SIZE', str(4 << 30))  # 4 GiB, least recently used evicted.

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
