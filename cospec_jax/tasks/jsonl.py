"""Reading a data set's jsonl file with errors that name the file, the line and the field."""

from __future__ import annotations

import json
from typing import Iterable


def read(path: str, fields: Iterable[str]) -> list[tuple[int, dict]]:
  """[(line number, record)] for each non-blank line of `path`, in file order; raises ValueError naming the file and
  line of a line that is not a JSON object or lacks one of `fields`."""
  fields = tuple(fields)
  rows = []
  with open(path) as f:
    for number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f'{path}, line {number}: not valid JSON ({e.msg} at column {e.colno}): '
                         f'{line.strip()[:80]!r}') from None
      if not isinstance(record, dict):
        raise ValueError(f'{path}, line {number}: expected a JSON object, got {type(record).__name__}.')
      missing = [k for k in fields if k not in record]
      if missing:
        raise ValueError(f'{path}, line {number}: field {missing[0]!r} is missing (the line has {sorted(record)}).')
      rows.append((number, record))
  return rows


def field_error(path: str, number: int, field: str, problem: str) -> ValueError:
  """A ValueError saying `path`, line `number`, field `field`: `problem`."""
  return ValueError(f'{path}, line {number}, field {field!r}: {problem}')
