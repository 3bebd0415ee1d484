"""The results file: one JSON line per row, each row written exactly once, resumable.

Only the process that drives the batch writes (never a worker), so a retried or
duplicated task cannot write twice: the writer keeps the ids it has, and a second result
for one id is dropped. Each line is flushed and fsynced before the row counts as done, so
after a crash (or Ctrl-C) the file holds whole rows only; a last line cut mid-write is
removed on the next open. Reopening the file skips the ids it already holds: rerunning
a batch resumes it.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import IO, Any

from rlm_engine.batch.results import RowResult


class OutputError(ValueError):
    """The results file cannot be used (unreadable, or not results of a batch)."""


def read_results(path: str | Path) -> list[RowResult]:
    """Every complete row of a results file, in the order written."""
    return [RowResult.from_dict(d) for d in _complete_lines(Path(path))[0]]


def _complete_lines(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The file's parsed rows and the byte length of its complete part."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    except OSError as e:
        raise OutputError(f"cannot read the results file {path}: {e.strerror or e}") from e
    rows: list[dict[str, Any]] = []
    good = 0
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:  # a last line without its newline: cut mid-write
            break
        line = data[pos:end].strip()
        pos = end + 1
        if line:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if pos >= len(data):  # a torn last line
                    break
                raise OutputError(
                    f"{path} has a line that is not JSON (byte {good}); is it a results "
                    "file of rlm batch? Give another --out or repair it"
                ) from None
            if not isinstance(row, dict) or "id" not in row:
                raise OutputError(f"{path} has a line without an id; is it a results file?")
            rows.append(row)
        good = pos
    return rows, good


class ResultWriter:
    """Appends results to ``path``; ``done`` holds the ids already there."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        rows, good = _complete_lines(self.path)
        self.done: set[str] = {str(r["id"]) for r in rows}
        self.resumed = len(self.done)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = self.path.open("ab")
        if self._fh.tell() > good:  # drop a torn last line before appending
            self._fh.truncate(good)
            self._fh.seek(good)
        self._lock = threading.Lock()

    def write(self, result: RowResult) -> bool:
        """Write ``result`` unless its id is written already; True when written."""
        line = json.dumps(result.to_dict(), ensure_ascii=False, default=str) + "\n"
        with self._lock:
            if result.id in self.done:
                return False
            self._fh.write(line.encode("utf-8", errors="replace"))
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self.done.add(result.id)
            return True

    def close(self) -> None:
        with self._lock:
            self._fh.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["OutputError", "ResultWriter", "read_results"]
