"""The decode benchmark in several fresh processes (prints each figure's median, min-max and runs at the bar; writes
bench_decode_spread.json). Not a test: timings vary by machine.

  python experiments/bench_decode_spread.py --config=configs/bench_decode.py --runs=5 --workdir=runs/decode_spread
  # batch 1 alone, about 1.5-2 min a run:
  python experiments/bench_decode_spread.py --config=configs/bench_decode.py --config.bench.batch_sizes='(1,)' \
      --config.bench.hf_compare=False --runs=5 --workdir=runs/decode_spread_b1

Every --config.* override goes to each run; a run already written in --workdir is reused. See
cospec_jax/decode_spread.py.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cospec_jax import decode_spread  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/bench_decode.py', 'The decode benchmark config.')
_RUNS = flags.DEFINE_integer('runs', 5, 'Fresh processes of the benchmark, one after another.')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/decode_spread', 'Where run_<k>/ and bench_decode_spread.json go.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments {argv[1:]}; settings go in --config.<key>=<value>.')
  if _CONFIG.value.get('job') != 'bench_decode':
    raise app.UsageError(f'--config names job {_CONFIG.value.get("job")!r}; a spread runs the decode benchmark: give '
                         'configs/bench_decode.py (with any --config.bench.* overrides).')
  config_args = [arg for arg in sys.argv[1:] if arg.startswith('--config')]
  split = [arg for arg in config_args if '=' not in arg]
  if split:
    raise app.UsageError(f'{split}: give config flags as --flag=value (each run gets them verbatim), e.g. '
                         "--config.bench.batch_sizes='(1,)'.")
  if not any(arg.startswith('--config=') for arg in config_args):
    config_args.insert(0, '--config=configs/bench_decode.py')
  decode_spread.run(config_args, _WORKDIR.value, _RUNS.value)


if __name__ == '__main__':
  app.run(main)
