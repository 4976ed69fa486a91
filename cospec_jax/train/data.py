"""Supervised examples as fixed-shape arrays: question -> solution, loss on the solution only.

A sequence is `BOS question '\n' solution EOS`; the model reads all but its last token and is scored on the tokens
after the question. Batches are a pure function of (seed, step), so a resumed run sees exactly the batches an
uninterrupted one would have.
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


def batch_at(examples: dict[str, np.ndarray], step: int, batch_size: int, seed: int,
             width_multiple: int = 0) -> dict[str, np.ndarray]:
  """The batch of `step`: `batch_size` examples drawn by a generator seeded with (seed, step). `width_multiple` > 0
  cuts the batch's columns to its longest example, rounded up to that multiple (a few compiled widths): the same
  examples and loss, less padding to compute."""
  n = len(examples['inputs'])
  index = np.random.default_rng([seed, step]).integers(0, n, batch_size)
  batch = {k: v[index] for k, v in examples.items()}
  if width_multiple > 0:
    longest = int(np.flatnonzero(batch['mask'].any(axis=0)).max()) + 1  # The last scored position of any row.
    width = min(-(-longest // width_multiple) * width_multiple, batch['inputs'].shape[1])
    batch = {k: v[:, :width] for k, v in batch.items()}
  return batch
