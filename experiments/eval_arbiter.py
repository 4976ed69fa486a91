"""A trained arbiter against exact SPD (= the target) on the test split: accuracy, paired McNemar test, tokens/call.

  python experiments/eval_arbiter.py --config=configs/train_arbiter.py --workdir=runs/arbiter \
      --config.pair.target_workdir=runs/target --config.pair.draft_workdir=runs/draft

A stop-gap until the full comparison table of every rule exists. Runtime: about a minute on a 2-core CPU.
"""

from absl import app, flags
from ml_collections import config_flags
from scipy import stats

from cospec_jax.train import arbiter, trainer

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/train_arbiter.py', 'The arbiter\'s training config.')
_WORKDIR = flags.DEFINE_string('workdir', 'runs/arbiter', 'The arbiter\'s workdir (its checkpoints are read).')
_N = flags.DEFINE_integer('num_examples', 500, 'Test problems.')


def main(argv):
  del argv
  config = _CONFIG.value
  state = arbiter.restore_state(config, _WORKDIR.value)
  _, splits = trainer.load_task(config.data, _WORKDIR.value)
  rows = arbiter.evaluate(config, _WORKDIR.value, state.params, config.rl.lams, splits['test'][:_N.value])
  base = rows[0]['correct']
  print(f'{"method":>16} {"accuracy":>9} {"+/- vs SPD":>11} {"McNemar p":>10} {"tokens/call":>12}')
  for row in rows:
    gained = sum(c and not b for c, b in zip(row['correct'], base))
    lost = sum(b and not c for c, b in zip(row['correct'], base))
    p = stats.binomtest(gained, gained + lost).pvalue if gained + lost else 1.0
    print(f'{row["method"]:>16} {row["accuracy"]:>9.1%} {f"+{gained}/-{lost}":>11} {p:>10.3g} '
          f'{row["tokens_per_target_call"]:>12.2f}')


if __name__ == '__main__':
  app.run(main)
