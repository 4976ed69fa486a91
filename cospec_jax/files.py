"""Writing result files so that a killed write never leaves a half-written file under the final name."""

from __future__ import annotations

import os
from typing import Union


def write_atomically(path: str, data: Union[str, bytes]) -> None:
  """Writes `data` to `path + '.tmp'`, then renames it onto `path` (atomic on POSIX)."""
  tmp = path + '.tmp'
  with open(tmp, 'wb' if isinstance(data, bytes) else 'w') as f:
    f.write(data)
  os.replace(tmp, path)
