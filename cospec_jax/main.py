"""Entry point: parse flags, pick the job the config names, run it. The logic lives in importable modules.

  python -m cospec_jax.main --config=configs/bench_decode.py --workdir=runs/bench_decode
  python -m cospec_jax.main --config=configs/bench_decode.py:smoke --config.bench.max_new_tokens=8 --workdir=/tmp/x
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from cospec_jax import decode_benchmark, evaluate, mesh_benchmark, pipeline, sharding, study, trace
from cospec_jax.train import arbiter, trainer

JOBS = {
    'bench_decode': decode_benchmark.run,
    'bench_mesh': mesh_benchmark.run,
    'train': trainer.train,
    'train_arbiter': arbiter.train_arbiter,
    'reproduce_table': evaluate.run,
    'pipeline': pipeline.run,
    'study': study.run,
    'trace': trace.run,
}

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file, optionally followed by :arg.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for this run\'s outputs (created if missing).')
flags.mark_flags_as_required(['config', 'workdir'])


def _check_workdir(workdir: str) -> None:
  """Creates `workdir` if missing; a workdir that cannot be written is an error before any work starts."""
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise app.UsageError(f'--workdir={workdir!r} cannot be created ({e.strerror}); pick a directory you can write.')
  if not os.path.isdir(workdir) or not os.access(workdir, os.W_OK | os.X_OK):
    raise app.UsageError(f'--workdir={workdir!r} is not a writable directory; pick one you can write, or fix its '
                         'permissions.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments {argv[1:]}; settings go in --config.<key>=<value>.')
  logging.set_verbosity(logging.WARNING)  # Orbax and TFDS log every file at INFO.
  config = _CONFIG.value
  if config.get('job') not in JOBS:
    raise app.UsageError(f'config.job={config.get("job")!r} is not a known job; choose one of {sorted(JOBS)}.')
  _check_workdir(_WORKDIR.value)
  sharding.initialize_distributed(config)  # Before anything touches a device; a no-op unless asked for.
  JOBS[config.job](config, _WORKDIR.value)


def run_script(config: str, workdir: str) -> None:
  """The entry point of experiments/*.py: this module's flags and jobs, with the script's own defaults for
  --config and --workdir (either can still be given on the command line)."""
  given = {arg.split('=', 1)[0] for arg in sys.argv[1:]}
  defaults = [f'--{name}={value}' for name, value in (('config', config), ('workdir', workdir))
              if f'--{name}' not in given]
  sys.argv[1:1] = defaults
  app.run(main)


if __name__ == '__main__':
  app.run(main)
