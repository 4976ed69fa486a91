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
  """One variant of the task: its seed, split sizes and difficulty."""

  seed: int = 0
  train_size: int = 20_000
  validation_size: int = 500
  test_size: int = 500
  difficulty: arithmetic.Difficulty = arithmetic.Difficulty()


class ArithmeticBuilder(tfds.core.GeneratorBasedBuilder):
  """Multi-step arithmetic word problems with GSM8K-style solutions."""

  name = 'cospec_arithmetic'
  VERSION = tfds.core.Version('2.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.',
                   '2.0.0': 'Disjoint splits: each split owns a hash bucket of problem keys; a `key` feature.'}
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
    c = self.builder_config
    for i, problem in enumerate(arithmetic.iter_problems(c.seed, split, n, c.difficulty)):
      yield arithmetic.problem_id(c.seed, split, i), dict(problem, index=i)


def load_split(split: str, data_dir: str, config: ArithmeticConfig) -> list[dict]:
  """Builds the data set if needed and returns one split as a list of dicts of str/int, in index order."""
  builder = ArithmeticBuilder(config=config, data_dir=data_dir)
  builder.download_and_prepare()
  source = builder.as_data_source()[split]
  rows = [_decode(source[i]) for i in range(len(source))]
  return sorted(rows, key=lambda r: r['index'])


def _decode(example: dict) -> dict:
  return {k: v.decode() if isinstance(v, bytes) else int(v) if k in ('steps', 'index') else v
          for k, v in example.items()}
