"""Static against continuous batching on the table's own workload (prints a table, writes table_batching.json). Not a
test: timings vary by machine. Needs a finished pipeline run in --workdir; reads validation problems only.

  python experiments/table_batching.py --config=configs/pipeline.py --workdir=runs/pipeline   # ~3.5 min idle

See cospec_jax/table_batching.py for what is timed.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cospec_jax import table_batching  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/pipeline.py', 'The pipeline config of the run.')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/pipeline', 'A pipeline run whose table stage is done.')
_ROUNDS = flags.DEFINE_integer('rounds', 2, 'Timed rounds after the compile run; each figure is its fastest.')
_REFILLS = flags.DEFINE_list('refills', ['4', '0'], 'Continuous batching at each of these refills_per_step (0: all).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments {argv[1:]}; settings go in --config.<key>=<value>.')
  table_batching.run(_CONFIG.value, _WORKDIR.value, _ROUNDS.value, tuple(int(k) for k in _REFILLS.value))


if __name__ == '__main__':
  app.run(main)
