"""Decode-speed benchmark (prints a table, writes bench_decode.json). Not a test: timings vary by machine.

  python experiments/bench_decode.py --config=configs/bench_decode.py --workdir=runs/bench_decode

See configs/bench_decode.py for the pair (by path or by config) and the grid, cospec_jax/decode_benchmark.py for
what each column means.
"""

from absl import app, flags
from ml_collections import config_flags

from cospec_jax import decode_benchmark

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/bench_decode.py', 'Benchmark config file.')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/bench_decode', 'Where bench_decode.json and exported pairs go.')


def main(argv):
  del argv
  decode_benchmark.run(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
