"""Static vs continuous batching throughput (prints a table, writes bench_throughput.json). Not a test: timings
vary by machine.

  python experiments/bench_throughput.py --config=configs/bench_throughput.py --workdir=runs/bench_throughput

See configs/bench_throughput.py for the workload and the pair, cospec_jax/throughput_benchmark.py for what is timed.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cospec_jax import throughput_benchmark  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/bench_throughput.py', 'The throughput benchmark config.')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/bench_throughput', 'Where bench_throughput.json goes.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments {argv[1:]}; settings go in --config.<key>=<value>.')
  throughput_benchmark.run(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
