"""The argument after the colon in --config=configs/NAME.py:ARG, checked: a typo is an error, not the full run."""

from __future__ import annotations

import os

SMOKE_ARGS = ('', 'smoke')  # '' is the real run; 'smoke' the same thing shrunk to seconds or minutes.


def is_smoke(arg: str, config_file: str) -> bool:
  """True for 'smoke', False for ''; any other `arg` is a ValueError naming the config, the argument and the valid
  ones (`config_file` is the config's __file__)."""
  if arg not in SMOKE_ARGS:
    name = f'configs/{os.path.basename(config_file)}'
    raise ValueError(f'{name}:{arg} is not a valid argument; {name} takes {" or ".join(map(repr, SMOKE_ARGS))} '
                     f'(--config={name} or --config={name}:smoke).')
  return arg == 'smoke'
