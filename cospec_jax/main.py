"""Entry point: parse flags, pick the job the config names, run it. The logic lives in importable modules.

  python -m cospec_jax.main --config=configs/bench_decode.py --workdir=runs/bench_decode
  python -m cospec_jax.main --config=configs/bench_decode.py:smoke --config.bench.max_new_tokens=8 --workdir=/tmp/x
"""

from absl import app, flags, logging
from ml_collections import config_flags

from cospec_jax import decode_benchmark, evaluate, pipeline
from cospec_jax.train import arbiter, trainer

JOBS = {
    'bench_decode': decode_benchmark.run,
    'train': trainer.train,
    'train_arbiter': arbiter.train_arbiter,
    'reproduce_table': evaluate.run,
    'pipeline': pipeline.run,
}

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file, optionally followed by :arg.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for this run\'s outputs (created if missing).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments {argv[1:]}; settings go in --config.<key>=<value>.')
  logging.set_verbosity(logging.WARNING)  # Orbax and TFDS log every file at INFO.
  config = _CONFIG.value
  if config.get('job') not in JOBS:
    raise app.UsageError(f'config.job={config.get("job")!r} is not a known job; choose one of {sorted(JOBS)}.')
  JOBS[config.job](config, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
