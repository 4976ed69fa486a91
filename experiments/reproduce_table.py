"""Reproduces the paper's comparison table on the embedded pair (see configs/reproduce_table.py for the run).

  python experiments/reproduce_table.py --config=configs/reproduce_table.py --workdir=runs/table \
      --config.pair.target_workdir=runs/target --config.pair.draft_workdir=runs/draft \
      --config.arbiter_workdir=runs/arbiter

Prints the table; writes results.json, table.md and pareto.png to --workdir.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from cospec_jax import evaluate

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/reproduce_table.py', 'The table\'s config.')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/table', 'Where results.json, table.md and pareto.png go.')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  evaluate.run(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
