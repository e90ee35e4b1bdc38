"""The cell cache: one small JSON file per finished cell, ``<out>/cells/<key>.json``.

Each file is written whole to a temporary name and renamed into place (atomic on POSIX), so an
interrupted sweep (Ctrl-C, SIGKILL, power cut before the rename) leaves either a complete cell or
none: a rerun recomputes exactly the cells without a good file. A failed cell is stored too (status
``failed`` with its error), for the table, and counts as not done: a rerun retries it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

OK = "ok"
FAILED = "failed"
MISSING = "missing"  # never computed (an interrupted sweep's table shows these)


class CellCache:
    def __init__(self, out_dir: Path) -> None:
        self.dir = Path(out_dir) / "cells"

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored record, or None when absent or unreadable (a truncated file counts as absent)."""
        try:
            record = json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("key") == key else None

    def done(self, key: str) -> bool:
        record = self.get(key)
        return record is not None and record.get("status") == OK

    def put(self, record: dict[str, Any]) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        target = self.path(record["key"])
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{record['key']}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(record, fh, indent=1, sort_keys=True, default=str)
                fh.write("\n")
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return target
