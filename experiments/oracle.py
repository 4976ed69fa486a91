"""The motivating counterfactual on a trained draft/target pair: prints (a), (b), (c) with counts, writes JSON.

  python experiments/oracle.py --target_workdir=runs/target --draft_workdir=runs/draft
  python experiments/oracle.py --target_workdir=... --draft_workdir=... --num_examples=100   # faster

The pair is read from each workdir's Hugging Face export (`<workdir>/hf`, written by the trainer); the problems are
the validation split of the target's data config (`--split=test` for the test split: a diagnostic that feeds no
choice). Runtime: about 1-2 minutes on a 2-core CPU for 500 problems.
"""

import json
import os

from absl import app, flags
from ml_collections import config_flags

from cospec_jax import oracle
from cospec_jax.models import load_hf_checkpoint
from cospec_jax.tasks import task as task_lib

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/train_target.py', 'Config whose data/eval sections '
                                          'define the problems.')
_TARGET = flags.DEFINE_string('target_workdir', 'runs/target', 'Workdir of the trained target.')
_DRAFT = flags.DEFINE_string('draft_workdir', 'runs/draft', 'Workdir of the trained draft.')
_N = flags.DEFINE_integer('num_examples', 500, 'Problems to use.')
_SPLIT = flags.DEFINE_enum('split', 'validation', ['train', 'validation', 'test'], 'Split the problems come from.')
_OUT = flags.DEFINE_string('output', '', 'JSON output path; default <target_workdir>/oracle.json.')


def main(argv):
  del argv
  config = _CONFIG.value
  pair = [load_hf_checkpoint(os.path.join(d, 'hf')) for d in (_TARGET.value, _DRAFT.value)]
  task = task_lib.from_config(config.data, _TARGET.value)
  result = oracle.run(pair[0], pair[1], task, task.problems(_SPLIT.value)[:_N.value], config.eval.max_new_tokens)
  print(oracle.format_report(result))
  path = _OUT.value or os.path.join(_TARGET.value, 'oracle.json')
  with open(path + '.tmp', 'w') as f:
    json.dump(result, f, indent=2)
  os.replace(path + '.tmp', path)
  print(f'wrote {path}')


if __name__ == '__main__':
  app.run(main)
