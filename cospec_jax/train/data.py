"""Supervised examples as fixed-shape arrays: question -> solution, loss on the solution only.

A sequence is `BOS question '\n' solution EOS`; the model reads all but its last token and is scored on the tokens
after the question. Batches are a pure function of (seed, step), so a resumed run sees exactly the batches an
uninterrupted one would have. A batch is padded to max_len (`batch_at`), or cut to its own longest example with
examples of similar length batched together (`pooled_batch_at`): the same examples, less padding to compute.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cospec_jax.tasks.tokenizer import Tokenizer

SEPARATOR = '\n'


def prompt_ids(tokenizer: Tokenizer, question: str) -> list[int]:
  """The tokens a model is given at inference time: BOS, the question and the separator."""
  return [tokenizer.bos_id] + tokenizer.encode(question + SEPARATOR)


def encode_examples(tokenizer: Tokenizer, questions: Sequence[str], solutions: Sequence[str],
                    max_len: int) -> dict[str, np.ndarray]:
  """Returns {'inputs', 'targets', 'mask'}: int32 [N, max_len] x2 and float32 [N, max_len].

  Raises ValueError naming the first example longer than max_len + 1 tokens.
  """
  n = len(questions)
  inputs = np.full((n, max_len), tokenizer.pad_id, np.int32)
  targets = np.full((n, max_len), tokenizer.pad_id, np.int32)
  mask = np.zeros((n, max_len), np.float32)
  for i, (q, s) in enumerate(zip(questions, solutions)):
    prompt = prompt_ids(tokenizer, q)
    seq = prompt + tokenizer.encode(s) + [tokenizer.eos_id]
    if len(seq) - 1 > max_len:
      raise ValueError(f'Example {i} has {len(seq) - 1} tokens, more than max_len={max_len}; raise '
                       '--config.train.max_len or make the task easier.')
    inputs[i, :len(seq) - 1] = seq[:-1]
    targets[i, :len(seq) - 1] = seq[1:]
    mask[i, len(prompt) - 1:len(seq) - 1] = 1.0
  return {'inputs': inputs, 'targets': targets, 'mask': mask}


def batch_at(examples: dict[str, np.ndarray], step: int, batch_size: int, seed: int) -> dict[str, np.ndarray]:
  """The batch of `step`: `batch_size` examples drawn by a generator seeded with (seed, step)."""
  n = len(examples['inputs'])
  index = np.random.default_rng([seed, step]).integers(0, n, batch_size)
  return {k: v[index] for k, v in examples.items()}


def example_lengths(examples: dict[str, np.ndarray]) -> np.ndarray:
  """int [N]: the tokens each example's row holds before its padding (its scored tokens end it)."""
  mask_NxL = examples['mask'] > 0
  return mask_NxL.shape[1] - np.argmax(mask_NxL[:, ::-1], axis=1)


def pooled_batch_at(examples: dict[str, np.ndarray], lengths_N: np.ndarray, step: int, batch_size: int, seed: int,
                    pool: int, multiple: int = 8) -> dict[str, np.ndarray]:
  """The batch of `step`, of examples of similar length, cut to the longest of them rounded up to `multiple`.

  The steps k * pool .. (k + 1) * pool - 1 share one pool of pool * batch_size examples drawn by a generator seeded
  with (seed, k, pool); the pool is sorted by length and cut into `pool` batches, which those steps take in an order
  the same generator shuffles. Every batch is one of few widths (multiples of `multiple`), so a jitted step
  compiles a few times, not once per batch.
  """
  n, max_len = examples['inputs'].shape
  k, i = divmod(step, pool)
  rng = np.random.default_rng([seed, k, pool])
  index_P = rng.integers(0, n, pool * batch_size)
  index_P = index_P[np.argsort(lengths_N[index_P], kind='stable')]
  b = rng.permutation(pool)[i]
  index_B = index_P[b * batch_size:(b + 1) * batch_size]
  width = min(max_len, -(-int(lengths_N[index_B].max()) // multiple) * multiple)
  return {key: v[index_B, :width] for key, v in examples.items()}
