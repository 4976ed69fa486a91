"""A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) behind the project's Tokenizer interface.

Text <-> ids through the `tokenizers` package; special tokens and the chat template from tokenizer_config.json; the
template rendered with Jinja in a sandbox, with the settings transformers uses (trim_blocks, lstrip_blocks, loop
controls, `raise_exception`, non-escaping `tojson`), so prompts match what the model was trained on.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Optional, Sequence

import jinja2
import jinja2.sandbox
import tokenizers


def _token_text(entry) -> Optional[str]:
  """tokenizer_config.json writes special tokens as a string or as {'content': ...}."""
  return entry.get('content') if isinstance(entry, dict) else entry


class HFTokenizer:
  """`HFTokenizer(directory)`: a checkpoint's tokenizer. `bos_id` is None when the tokenizer has no BOS (Qwen)."""

  def __init__(self, directory: str):
    path = os.path.join(directory, 'tokenizer.json')
    if not os.path.exists(path):
      raise FileNotFoundError(f'No tokenizer.json in {directory}: point at a Hugging Face checkpoint directory.')
    self._tokenizer = tokenizers.Tokenizer.from_file(path)
    config_path = os.path.join(directory, 'tokenizer_config.json')
    self.config = {}
    if os.path.exists(config_path):
      with open(config_path) as f:
        self.config = json.load(f)
    self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)
    self.eos_token = _token_text(self.config.get('eos_token'))
    self.bos_token = _token_text(self.config.get('bos_token'))
    pad_token = _token_text(self.config.get('pad_token')) or self.eos_token
    self.eos_id = self._id(self.eos_token, 'eos_token')
    self.pad_id = self._id(pad_token, 'pad_token')
    self.bos_id = None if self.bos_token is None else self._id(self.bos_token, 'bos_token')
    self.chat_template = self.config.get('chat_template')

  def _id(self, token: Optional[str], field: str) -> int:
    if token is None:
      raise ValueError(f'tokenizer_config.json sets no {field}; the decoders need it (pass one in the config).')
    token_id = self._tokenizer.token_to_id(token)
    if token_id is None:
      raise ValueError(f'{field} {token!r} is not in tokenizer.json\'s vocabulary.')
    return token_id

  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, with no special tokens added (a chat template writes its own)."""
    return self._tokenizer.encode(text, add_special_tokens=False).ids

  def decode(self, ids: Iterable[int]) -> str:
    """Text of `ids`, stopping at EOS and skipping special tokens."""
    kept = []
    for i in ids:
      if int(i) == self.eos_id:
        break
      kept.append(int(i))
    return self._tokenizer.decode(kept, skip_special_tokens=True)

  def apply_chat_template(self, messages: Sequence[dict], add_generation_prompt: bool = True, **kwargs) -> str:
    """The prompt text for `messages` ([{'role', 'content'}]) by the checkpoint's chat template."""
    if not self.chat_template:
      raise ValueError('This tokenizer has no chat_template in tokenizer_config.json; build the prompt as plain text '
                       '(e.g. gsm8k.few_shot_prompt).')
    return _compile(self.chat_template).render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                               bos_token=self.bos_token or '', eos_token=self.eos_token or '',
                                               **kwargs)


def _raise(message: str):
  raise jinja2.exceptions.TemplateError(message)


def _compile(template: str) -> jinja2.Template:
  env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                     extensions=['jinja2.ext.loopcontrols'])
  env.filters['tojson'] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
  env.globals['raise_exception'] = _raise
  return env.from_string(template)
