"""The arithmetic task as a tensorflow-datasets builder: builds offline in seconds, loads like any TFDS data set.

  builder = ArithmeticBuilder(config=ArithmeticConfig(name='default'), data_dir=...)
  builder.download_and_prepare()
  test = builder.as_data_source()['test']      # random access, no TensorFlow needed
  tfds.load('cospec_arithmetic/default', data_dir=...)   # once this module is imported

Files are written in the array_record format, so neither building nor reading needs TensorFlow.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from cospec_jax.tasks import arithmetic


@dataclasses.dataclass
class ArithmeticConfig(tfds.core.BuilderConfig):
  """One variant of the task: its seed, split sizes, difficulty and wording, and the transfer family's share."""

  seed: int = 0
  train_size: int = 20_000
  validation_size: int = 500
  test_size: int = 500
  difficulty: arithmetic.Difficulty = arithmetic.Difficulty()
  wording: arithmetic.Wording = arithmetic.Wording()
  transfer_family: str = ''  # A second family ('units') in the mixture; '' for arithmetic alone.
  transfer_train_share: float = 0.0  # Its share of the training problems.
  transfer_eval_size: int = 0  # Its problems in validation and in test (each), after the arithmetic ones.


class ArithmeticBuilder(tfds.core.GeneratorBasedBuilder):
  """Multi-step arithmetic word problems with GSM8K-style solutions."""

  name = 'cospec_arithmetic'
  VERSION = tfds.core.Version('3.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.',
                   '2.0.0': 'Disjoint splits: each split owns a hash bucket of problem keys; a `key` feature.',
                   '3.0.0': 'Freedom of wording; a transfer family in the mixture; a `family` feature.'}
  BUILDER_CONFIGS = [
      ArithmeticConfig(name='default', description='2-4 steps of +, -, *.'),
      ArithmeticConfig(name='smoke', description='Tiny splits for tests.', train_size=64, validation_size=16,
                       test_size=16),
  ]

  def __init__(self, *, file_format: str = 'array_record', **kwargs):
    super().__init__(file_format=file_format, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'question': tfds.features.Text(),
            'solution': tfds.features.Text(),
            'answer': tfds.features.Text(),
            'key': tfds.features.Text(),  # Canonical content (arithmetic.problem_key); decides the split.
            'family': tfds.features.Text(),  # 'arithmetic' or the transfer family.
            'steps': tfds.features.Scalar(dtype=np.int32),
            'index': tfds.features.Scalar(dtype=np.int32),
        }),
        supervised_keys=('question', 'solution'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    c = self.builder_config
    return {'train': self._generate_examples('train', c.train_size),
            'validation': self._generate_examples('validation', c.validation_size),
            'test': self._generate_examples('test', c.test_size)}

  def _generate_examples(self, split: str, n: int):
    """The split's arithmetic problems, then its transfer-family problems (a share of train; transfer_eval_size in
    validation and test)."""
    c = self.builder_config
    if not c.transfer_family:
      counts = {'arithmetic': n}
    elif split == 'train':
      n_transfer = int(round(n * c.transfer_train_share))
      counts = {'arithmetic': n - n_transfer, c.transfer_family: n_transfer}
    else:
      counts = {'arithmetic': n, c.transfer_family: c.transfer_eval_size}
    i = 0
    for family, count in counts.items():
      for problem in arithmetic.iter_problems(c.seed, split, count, c.difficulty, c.wording, family):
        yield arithmetic.problem_id(c.seed, split, i), dict(problem, index=i)
        i += 1


def build(data_dir: str, config: ArithmeticConfig) -> ArithmeticBuilder:
  """The data set's builder, its files written first if they are not on disk yet."""
  builder = ArithmeticBuilder(config=config, data_dir=data_dir)
  builder.download_and_prepare()
  return builder


def load_splits(data_dir: str, config: ArithmeticConfig) -> dict[str, list[dict]]:
  """Builds the data set if needed and returns {split: list of dicts of str/int, in index order}."""
  return {split: sorted((_decode(source[i]) for i in range(len(source))), key=lambda r: r['index'])
          for split, source in build(data_dir, config).as_data_source().items()}


def _decode(example: dict) -> dict:
  return {k: v.decode() if isinstance(v, bytes) else int(v) if k in ('steps', 'index') else v
          for k, v in example.items()}
