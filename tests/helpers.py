"""Tiny models and pairs the tests share."""

from __future__ import annotations

import jax
import numpy as np

from cospec_jax.models import ModelConfig, init_params


def tiny_config(vocab_size: int = 61, **overrides) -> ModelConfig:
  """A 2-layer GQA model; initializer_range 0.3 makes logits peaked, so argmax ties are vanishingly rare."""
  base = dict(vocab_size=vocab_size, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, ffw_dim=64,
              initializer_range=0.3)
  base.update(overrides)
  return ModelConfig(**base)


def perturbed(params, rng: jax.Array, scale: float):
  """A copy of `params` with Gaussian noise: a draft that agrees with its target often, but not always."""
  leaves, treedef = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(rng, len(leaves))
  return jax.tree_util.tree_unflatten(
      treedef, [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])


def tiny_pair(vocab_size: int = 61, seed: int = 0, noise: float = 0.08):
  """(target_config, target_params, draft_config, draft_params): the draft is a noisy copy of the target."""
  config = tiny_config(vocab_size)
  params = init_params(config, jax.random.PRNGKey(seed))
  return config, params, config, perturbed(params, jax.random.PRNGKey(seed + 1), noise)


def ragged_prompts(n: int, vocab_size: int, seed: int = 0, low: int = 1, high: int = 12, first_token: int = 4):
  """n prompts of random lengths in [low, high) with tokens >= first_token (so they avoid pad/EOS ids)."""
  rs = np.random.RandomState(seed)
  return [rs.randint(first_token, vocab_size, rs.randint(low, high)).tolist() for _ in range(n)]


def pad(prompts, pad_id: int = 0):
  """Right-pads prompts exactly to the longest one: (tokens_BxP, lengths_B) as jax arrays."""
  from cospec_jax.decoding import prompts as prompts_lib
  tokens, lengths = prompts_lib.pad_prompts(prompts, pad_id, buckets=None)
  return jax.numpy.asarray(tokens), jax.numpy.asarray(lengths)


CHAT_SPECIALS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>']
CHAT_TEMPLATE = (  # A Qwen-style ChatML template.
    "{%- if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are helpful.<|im_end|>\\n' }}{%- endif %}\n"
    "{%- for message in messages %}\n"
    "  {%- if message['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('bad role') }}{% endif %}\n"
    "  {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}\n")


def write_chat_tokenizer(directory: str, corpus, vocab_size: int = 300) -> None:
  """A byte-level BPE tokenizer.json trained on `corpus` (Qwen's special tokens, EOS <|im_end|>, no BOS) and a
  tokenizer_config.json with a ChatML template, written into `directory`."""
  import json
  import os

  import tokenizers
  from tokenizers import decoders, models, pre_tokenizers, trainers
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(list(corpus) * 20, trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=CHAT_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  tok.save(os.path.join(directory, 'tokenizer.json'))
  with open(os.path.join(directory, 'tokenizer_config.json'), 'w') as f:
    json.dump({'tokenizer_class': 'PreTrainedTokenizerFast', 'eos_token': '<|im_end|>', 'pad_token': '<|endoftext|>',
               'bos_token': None, 'chat_template': CHAT_TEMPLATE}, f)
