"""Every config's get_config takes only its documented arguments: a typo such as 'smok' is an error listing the
valid ones, never the full run."""

import importlib.util
import os

import pytest

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')
NAMES = sorted(f for f in os.listdir(CONFIGS) if f.endswith('.py'))


def _load(name):
  spec = importlib.util.spec_from_file_location(name[:-3], os.path.join(CONFIGS, name))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_every_config_is_checked():
  assert len(NAMES) == 9 and 'pipeline.py' in NAMES and 'paper.py' in NAMES  # A new config joins the test below.


@pytest.mark.parametrize('name', NAMES)
def test_an_unknown_argument_is_an_error_listing_the_valid_ones(name):
  module = _load(name)
  valid = r'0.5b-7b.*gsm8k' if name == 'paper.py' else r"takes '' or 'smoke'"
  for typo in ('smok', 'Smoke', 'smoke '):
    with pytest.raises(ValueError, match=rf'configs/{name}:{typo}.*{valid}'):
      module.get_config(typo)
  assert module.get_config('smoke') != module.get_config('')  # Both valid arguments build, and differ.
