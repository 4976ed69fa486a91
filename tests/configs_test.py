"""Every config's get_config takes only its documented arguments: a typo such as 'smok' is an error listing the
valid ones, never the full run."""

import importlib.util
import os
import subprocess
import sys

import pytest

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')
NAMES = sorted(f for f in os.listdir(CONFIGS) if f.endswith('.py'))


def _load(name):
  spec = importlib.util.spec_from_file_location(name[:-3], os.path.join(CONFIGS, name))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_the_configs_are_found():
  assert {'pipeline.py', 'paper.py', 'train_target.py'} <= set(NAMES)


@pytest.mark.parametrize('name', NAMES)
def test_an_unknown_argument_is_an_error_listing_the_valid_ones(name):
  module = _load(name)
  for typo in ('smok', 'Smoke', 'smoke '):
    with pytest.raises(ValueError, match=rf"configs/{name}:{typo}.*'?smoke'?") as error:
      module.get_config(typo)
    if name == 'paper.py':
      assert '0.5b-7b' in str(error.value) and 'gsm8k' in str(error.value)
  assert module.get_config('smoke') != module.get_config('')  # Both valid arguments build, and differ.


def test_the_command_line_names_the_valid_arguments(tmp_path):
  """The typo through the real entry point: an error before any work, naming the command that works."""
  result = subprocess.run([sys.executable, '-m', 'cospec_jax.main', '--config=configs/pipeline.py:smok',
                           f'--workdir={tmp_path / "run"}'], cwd=os.path.dirname(CONFIGS), capture_output=True,
                          text=True, timeout=300)
  assert result.returncode != 0
  assert '--config=configs/pipeline.py:smoke' in result.stderr and not os.path.exists(tmp_path / 'run')
