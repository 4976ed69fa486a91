"""Final answers: extraction from a generated solution and comparison with a reference, GSM8K style.

A solution ends with a line `#### <answer>`. Numbers may carry commas (1,234), a sign (-5, +5), decimals (2.50),
a currency sign or a trailing period. Written once, used by the embedded task and by GSM8K.
"""

from __future__ import annotations

import decimal
import re
from typing import Optional

import numpy as np

_NUMBER = re.compile(r'[-+]?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\$?\s*\.\d+')
_MARKER = '####'


def normalize_number(text: str) -> Optional[str]:
  """Canonical form of one number ('1,234.50' -> '1234.5', '-0' -> '0', '$5.' -> '5'); None if not a number."""
  cleaned = text.strip().rstrip('.').replace(',', '').replace('$', '').replace(' ', '')
  try:
    value = decimal.Decimal(cleaned)
  except decimal.InvalidOperation:
    return None
  if not value.is_finite():
    return None
  value = value.normalize()
  if value == 0:
    return '0'
  text = format(value, 'f')
  return text.rstrip('0').rstrip('.') if '.' in text else text


def extract_answer(solution: str, fallback_to_last_number: bool = False) -> Optional[str]:
  """The normalized number after the last '####' (or, if asked and there is no marker, the last number).

  Returns None when there is no answer to read.
  """
  if _MARKER in solution:
    tail = solution.rsplit(_MARKER, 1)[1].strip().splitlines()
    if not tail:
      return None
    match = _NUMBER.search(tail[0])
    return normalize_number(match.group()) if match else None
  if fallback_to_last_number:
    numbers = _NUMBER.findall(solution)
    return normalize_number(numbers[-1]) if numbers else None
  return None


def score_completions(tokenizer, completions, problems) -> np.ndarray:
  """bool [N]: each completion's (token ids) final answer is its problem's ('answer' field)."""
  return np.array([is_correct(tokenizer.decode(list(c)), p['answer']) for c, p in zip(completions, problems)], bool)


def is_correct(generated: str, reference_answer: str) -> bool:
  """True when the generated solution's final answer equals the reference answer (a number or a '#### n' text)."""
  reference = extract_answer(reference_answer) if _MARKER in reference_answer else normalize_number(reference_answer)
  if reference is None:
    raise ValueError(f'Reference answer {reference_answer!r} holds no number; is it the right field?')
  return extract_answer(generated) == reference
