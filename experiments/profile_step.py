"""Profiles one speculative step into its parts (prints a table, writes profile_step.json). Not a test.

  python experiments/profile_step.py --config=configs/bench_decode.py --workdir=runs/profile_step

Runtime: about 3 minutes on an idle 2-core CPU. See cospec_jax/step_profile.py for what each part is.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cospec_jax import step_profile  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/bench_decode.py', 'The decode benchmark config.')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/profile_step', 'Where profile_step.json goes.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments {argv[1:]}; settings go in --config.<key>=<value>.')
  step_profile.run(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
