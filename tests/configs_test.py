"""Every config's get_config takes only its documented arguments: a typo such as 'smok' is an error listing the
valid ones, never the full run."""

import importlib.util
import os
import re
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


def _leaves(tree, path=()):
  for key, value in tree.items():
    if isinstance(value, dict) and value:
      yield from _leaves(value, path + (key,))
    else:
      yield path + (key,), value


def _sources(name):
  """The text of configs/<name> and of every config file it builds on (config_args.load), transitively."""
  seen, todo = {}, [name]
  while todo:
    current = todo.pop()
    with open(os.path.join(CONFIGS, current)) as f:
      seen[current] = f.read()
    todo += [f'{n}.py' for n in re.findall(r"config_args\.load\(__file__, '(\w+)'", seen[current])
             if f'{n}.py' not in seen]
  return seen


def _args(name, module):
  if name == 'paper.py':
    return [f'{pair},{task}{smoke}' for pair in module.PAIRS for task in module.TASKS for smoke in ('', ',smoke')]
  return ['', 'smoke', 'bars'] if name == 'tpu_compile.py' else ['', 'smoke']


@pytest.mark.parametrize('name', NAMES)
def test_every_field_is_set_and_stated_in_a_config_file(name):
  """A user reads every knob in configs/: each field of each config, full and smoke, has a value (not None) and is
  named in the file or in a config file it builds on, none only in library code."""
  module = _load(name)
  text = '\n'.join(_sources(name).values())
  for arg in _args(name, module):
    config = module.get_config(arg).to_dict()
    for path, value in _leaves(config):
      where = f'configs/{name}:{arg} field {".".join(path)}'
      assert value is not None, f'{where} is not set'
      if not re.search(rf"(\b{path[-1]}\s*=[^=]|'{path[-1]}'\s*:)", text):
        pytest.fail(f'{where} is not stated in configs/ (set by library code?)')


def test_a_stage_file_and_the_pipeline_agree():
  """The pipeline reads its stages from their files: a stage's config and the pipeline's section are equal, and its
  one data section is shared, so a change to it reaches every stage."""
  pipeline = _load('pipeline.py').get_config('')
  assert pipeline.target == _load('train_target.py').get_config('')
  assert pipeline.draft == _load('train_draft.py').get_config('')
  arbiter = _load('train_arbiter.py').get_config('')
  assert pipeline.arbiter.rl == arbiter.rl and pipeline.arbiter.policy == arbiter.policy
  assert pipeline.arbiter.table == _load('reproduce_table.py').get_config('').table
  assert pipeline.arbiter.trace == _load('trace.py').get_config('').trace
  pipeline.target.data.train_size = 123
  assert pipeline.draft.data.train_size == pipeline.arbiter.data.train_size == 123
