"""AOT compile check of the paper pairs for TPU topologies, on a machine without a TPU (experiments/tpu/README.md).

Run (in a virtualenv with jax[tpu]==0.10.2, i.e. libtpu; the CPU test environment cannot compile for TPUs):
  python3 -m venv .tpu-venv && . .tpu-venv/bin/activate && pip install -r requirements.txt "jax[tpu]==0.10.2" \
      && pip install --no-deps -e .
  python experiments/tpu/compile_check.py --config=configs/tpu_compile.py:bars    # the cells the issue's bars need
  python experiments/tpu/compile_check.py --config=configs/tpu_compile.py          # the whole grid (resumable)
  python experiments/tpu/compile_check.py --config=configs/tpu_compile.py --only='1.5b-32b/v4-8/*'
Smoke (a tiny pair for one topology, seconds; what CI runs):
  python experiments/tpu/compile_check.py --config=configs/tpu_compile.py:smoke --out=/tmp/smoke.json

Runtime on a 2-core CPU: about 1-2 minutes per compiled loop of a paper pair (scanned layers; the continuous loop
~30 s), ~10 s per step projection, ~75 s per throughput projection; the bars are 42 cells (~40 min), the full grid
2 pairs x 5 topologies x 9 shapes x 7 programs (many hours: run it in pieces with --only; finished cells are kept in
the json and skipped). Host memory peaks at a few GiB.
Reproduces: issue 15's table of per-chip bytes against HBM, compile times and roofline projections (compiled and
projected, not run on a TPU).
"""

import ml_collections

TOPOLOGIES = {
    # name: (jax topology name, chip config ('' or 'megacore'), chip in experiments/tpu/data/chips.json). v4 devices
    # are TensorCores unless megacore, which is how v4 VMs run (one 32 GiB device per chip).
    'v5e-8': ('v5e:2x4', '', 'v5e'),
    'v4-8': ('v4:2x2x1', 'megacore', 'v4'),
    'v5p-8': ('v5p:2x2x1', '', 'v5p'),
    'v6e-8': ('v6e:2x4', '', 'v6e'),
    'v4-16': ('v4:2x2x2', 'megacore', 'v4'),  # Two hosts of 4 chips: the multi-host slice.
}
PROGRAMS = ('target', 'spd', 'continuous', 'cospec', 'reinforce', 'step', 'throughput')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """`arg`: '' the full grid, 'bars' the cells issue 15's bars need, 'smoke' a tiny pair on one topology."""
  if arg not in ('', 'bars', 'smoke'):
    raise ValueError(f"configs/tpu_compile.py:{arg} is not a valid argument; use '' (the full grid), 'bars' or "
                     "'smoke'.")
  config = ml_collections.ConfigDict()
  config.out = 'experiments/tpu/compile_check.json'  # Results, one entry per cell; kept cells are skipped.
  config.pairs = ('0.5b-7b', '1.5b-32b')  # configs/paper.py's pairs; the meshes are its TOPOLOGIES'.
  config.topologies = tuple(TOPOLOGIES)  # Names in TOPOLOGIES.
  config.batch_sizes = (1, 16, 64)  # Rows per decode call (global).
  config.prompt_lengths = (512, 1024, 2048)  # Padded prompt length (a bucket).
  # target-only loop, SPD loop, SPD with continuous batching, CoSpec loop, REINFORCE update; projected: one decode
  # step, and static against continuous batching on the workload below (roofline).
  config.programs = PROGRAMS
  config.gamma = 8  # Draft tokens per target call (configs/paper.py's rl.gamma).
  config.max_new_tokens = 384  # Tokens per row (configs/paper.py's gsm8k budget).
  config.max_decisions = 64  # CoSpec's recorded decisions per row (rl.max_decisions).
  config.tau = 4.0  # Assumed tokens per target call for the SPD projection (not measured on these pairs).
  # The continuous loop's prompts and the throughput projection's answer lengths: log-normal budgets clipped to
  # [min_new, max_new_tokens], long-tailed like GSM8K answers (an assumption, as configs/bench_throughput.py draws).
  config.workload = ml_collections.ConfigDict(dict(n_prompts=256, median_new=96, sigma=0.8, min_new=16, seed=0))
  config.policy_hidden = 64  # Arbiter MLP width (configs/train_arbiter.py).
  config.policy_projection = 16  # Arbiter hidden-state projection width.
  config.models = ''  # '' reads the pairs' config.json shapes from experiments/tpu/data/qwen2.5_configs.json.
  if arg == 'bars':
    # Both pairs fit v5e-8 and v4-8 at batch 16 with 1024-token prompts (SPD, CoSpec, REINFORCE), the 32B target's
    # SPD compile time, and the two-host slice compiles.
    config.topologies = ('v5e-8', 'v4-8', 'v4-16')
    config.batch_sizes = (16,)
    config.prompt_lengths = (1024,)
  if arg == 'smoke':
    config.out = '/tmp/cospec_tpu_compile_smoke.json'
    config.pairs = ('tiny',)
    config.topologies = ('v5e-8',)
    config.batch_sizes = (16,)
    config.prompt_lengths = (64,)
    config.gamma = 4
    config.max_new_tokens = 32
    config.max_decisions = 8
    config.policy_hidden = 16
    config.policy_projection = 4
    config.workload = ml_collections.ConfigDict(dict(n_prompts=32, median_new=8, sigma=0.8, min_new=2, seed=0))
  return config
