"""Batch input rows: what one completion of a batch answers, parsed and checked up front.

A row is a JSON object (one per line in a ``.jsonl`` file, or a dict in Python)::

    {"id": "q1", "context": "...", "query": "Which vendor was paid twice?", "expected": "Acme"}
    {"id": "q2", "context_path": "docs/report.txt", "query": "..."}

- ``id`` (str or int, unique in the batch) names the row in the results; resuming skips
  ids already written.
- ``context`` is inline (str, list of str, dict or list of dicts), or ``context_path`` a
  file read where the row runs (a shared file system on a cluster), relative paths from
  the input file's directory. Never both.
- ``query`` (optional when the task is inside the context) and ``expected`` (optional:
  the answer a result is compared with).

Bad rows fail before any LM call, with the line number and what to fix, so a batch never
stops half-way over a typo.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KNOWN_FIELDS = frozenset({"id", "context", "context_path", "query", "expected"})


class RowError(ValueError):
    """A row that cannot run: says which row and what to fix."""


@dataclass(frozen=True)
class BatchRow:
    """One completion of a batch: ``context`` inline or ``context_path`` read where it runs."""

    id: str
    query: str | None = None
    context: Any = None
    context_path: str | None = None
    expected: str | None = None

    def load_context(self) -> Any:
        """The context to answer over: inline, or the file's text (UTF-8, bad bytes
        replaced), read here, i.e. in the process that runs the row."""
        if self.context_path is None:
            return self.context
        try:
            return Path(self.context_path).read_bytes().decode("utf-8", errors="replace")
        except OSError as e:
            raise RowError(
                f"row {self.id!r}: cannot read context_path {self.context_path}: {e.strerror or e}"
            ) from e

    def without_context(self) -> BatchRow:
        """The row minus its inline context (shipped separately, e.g. in Ray's object store)."""
        return BatchRow(self.id, self.query, None, self.context_path, self.expected)

    @classmethod
    def from_dict(cls, data: Any, *, where: str, base_dir: Path | None = None) -> BatchRow:
        """A row from a JSON object; ``where`` names it in errors (``input.jsonl:12``)."""
        if isinstance(data, BatchRow):
            return data
        if not isinstance(data, Mapping):
            raise RowError(f"{where}: a row must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - KNOWN_FIELDS)
        if unknown:
            raise RowError(
                f"{where}: unknown field(s) {unknown}; a row has {', '.join(sorted(KNOWN_FIELDS))}"
            )
        row_id = data.get("id")
        if isinstance(row_id, bool) or not isinstance(row_id, str | int) or str(row_id) == "":
            raise RowError(f'{where}: every row needs an "id" (a non-empty string or integer)')
        if "context" in data and "context_path" in data:
            raise RowError(f'{where}: give "context" or "context_path", not both')
        path = data.get("context_path")
        if path is not None:
            if not isinstance(path, str) or not path:
                raise RowError(f'{where}: "context_path" must be a file path')
            p = Path(path).expanduser()
            if not p.is_absolute() and base_dir is not None:
                p = base_dir / p
            path = str(p)
        query, expected = data.get("query"), data.get("expected")
        for name, value in (("query", query), ("expected", expected)):
            if value is not None and not isinstance(value, str):
                raise RowError(f'{where}: "{name}" must be a string, got {value!r}')
        if path is None and "context" not in data and not query:
            raise RowError(f"{where}: the row has no context, context_path or query")
        return cls(str(row_id), query, data.get("context"), path, expected)


def read_rows(path: str | Path) -> Iterator[BatchRow]:
    """The rows of a ``.jsonl`` file, in order (blank lines skipped); relative
    ``context_path``\\ s are from the file's directory."""
    p = Path(path).expanduser()
    try:
        fh = p.open(encoding="utf-8", errors="replace")
    except OSError as e:
        raise RowError(f"cannot read the input {path}: {e.strerror or e}") from e
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as e:
                raise RowError(f"{path}:{n}: not a JSON object ({e.msg})") from None
            yield BatchRow.from_dict(data, where=f"{path}:{n}", base_dir=p.parent)


def load_rows(rows: str | Path | Iterable[Any]) -> list[BatchRow]:
    """Every row of a ``.jsonl`` path, or of an iterable of dicts / :class:`BatchRow`,
    checked before the batch starts; a repeated id is an error (results are keyed by id)."""
    source: Iterable[BatchRow]
    if isinstance(rows, str | Path):
        source = read_rows(rows)
    else:
        source = (BatchRow.from_dict(r, where=f"row {i}") for i, r in enumerate(rows))
    seen: set[str] = set()
    out: list[BatchRow] = []
    for row in source:
        if row.id in seen:
            raise RowError(f"row id {row.id!r} appears twice; ids must be unique in a batch")
        seen.add(row.id)
        out.append(row)
    return out


__all__ = ["BatchRow", "RowError", "load_rows", "read_rows"]
