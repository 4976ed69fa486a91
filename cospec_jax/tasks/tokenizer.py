"""Tokenizers behind one interface: a character tokenizer for the embedded task (Hugging Face tokenizers later).

Interface: `vocab_size`, `pad_id`, `bos_id`, `eos_id`, `encode(text) -> list[int]`, `decode(ids) -> str`.
"""

from __future__ import annotations

import string
from typing import Iterable, Protocol


class Tokenizer(Protocol):
  vocab_size: int
  pad_id: int
  bos_id: int
  eos_id: int

  def encode(self, text: str) -> list[int]:
    ...

  def decode(self, ids: Iterable[int]) -> str:
    ...


class CharTokenizer:
  """One token per character of a fixed alphabet, after PAD=0, BOS=1, EOS=2."""

  SPECIALS = ('<pad>', '<bos>', '<eos>')
  ALPHABET = string.digits + string.ascii_letters + ' \n.,?!:;+-*/=()#$%\'"'

  def __init__(self, alphabet: str = ALPHABET):
    if len(set(alphabet)) != len(alphabet):
      raise ValueError('The alphabet has repeated characters.')
    self.alphabet = alphabet
    self._ids = {c: i + len(self.SPECIALS) for i, c in enumerate(alphabet)}
    self.vocab_size = len(self.SPECIALS) + len(alphabet)
    self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

  def encode(self, text: str) -> list[int]:
    """Token ids of `text` (no BOS/EOS added); raises ValueError naming any character outside the alphabet."""
    try:
      return [self._ids[c] for c in text]
    except KeyError as e:
      raise ValueError(f'Character {e.args[0]!r} is not in the tokenizer alphabet {self.alphabet!r}.') from None

  def decode(self, ids: Iterable[int]) -> str:
    """Text of `ids`, stopping at EOS and skipping PAD/BOS."""
    out = []
    for i in ids:
      i = int(i)
      if i == self.eos_id:
        break
      if i >= len(self.SPECIALS):
        out.append(self.alphabet[i - len(self.SPECIALS)])
    return ''.join(out)
