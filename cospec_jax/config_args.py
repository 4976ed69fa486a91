"""Helpers of the config files: the argument after the colon in --config=configs/NAME.py:ARG, checked (a typo is an
error, not the full run), and one config built on another's file."""

from __future__ import annotations

import importlib.util
import os

import ml_collections

SMOKE_ARGS = ('', 'smoke')  # '' is the real run; 'smoke' the same thing shrunk to seconds or minutes.


def is_smoke(arg: str, config_file: str) -> bool:
  """True for 'smoke', False for ''; any other `arg` is a ValueError naming the config, the argument and the valid
  ones (`config_file` is the config's __file__)."""
  if arg not in SMOKE_ARGS:
    name = f'configs/{os.path.basename(config_file)}'
    raise ValueError(f'{name}:{arg} is not a valid argument; {name} takes {" or ".join(map(repr, SMOKE_ARGS))} '
                     f'(--config={name} or --config={name}:smoke).')
  return arg == 'smoke'


def load(config_file: str, name: str, arg: str = '') -> ml_collections.ConfigDict:
  """get_config(arg) of configs/<name>.py, the config beside `config_file` (the caller's __file__): a config that
  builds on another (the draft on the target's data, the pipeline on its stages) reads it from its file, so each
  field is stated once, in the file of the run it belongs to."""
  path = os.path.join(os.path.dirname(os.path.abspath(config_file)), f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'_cospec_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)
