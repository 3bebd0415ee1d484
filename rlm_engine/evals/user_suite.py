"""A suite of the user's own: one task per JSONL line.

Each line is an object with ``query``, ``answer``, and either ``context`` (a string or a
list of strings) or ``path`` (a text file, or a directory read like ``rlm run
--context DIR``; relative to the JSONL file). Optional: ``scorer`` (default ``contains``;
see :mod:`.scorers`), ``id``, and ``meta`` (e.g. ``{"distractors": [...]}`` for the
``needle`` scorer). A task's size is its context's length in tokens (4 characters per
token), so user tasks land on the plots' x axis where they belong.

Every problem is reported with its line number before anything runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlm_engine.evals.scorers import SCORERS
from rlm_engine.evals.tasks import CHARS_PER_TOKEN, Task


class SuiteFileError(ValueError):
    """A user suite file that cannot be read; the message names the line and the fix."""


def _load_path(spec: str, base: Path, where: str) -> str | list[str]:
    path = Path(spec).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.is_file():
        return path.read_text(encoding="utf-8", errors="replace")
    if path.is_dir():
        docs = []
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = f.relative_to(path)
            if any(part.startswith(".") for part in rel.parts):
                continue
            data = f.read_bytes()
            if b"\x00" in data[:8192]:
                continue
            docs.append(f"--- file: {rel.as_posix()} ---\n" + data.decode("utf-8", "replace"))
        if docs:
            return docs
        raise SuiteFileError(f"{where}: directory {path} has no text files")
    raise SuiteFileError(f"{where}: path {path} does not exist")


def _task(obj: Any, index: int, suite: str, base: Path, where: str) -> Task:
    if not isinstance(obj, dict):
        raise SuiteFileError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in ("query", "answer") if not isinstance(obj.get(k), str)]
    if missing:
        raise SuiteFileError(f"{where}: {' and '.join(missing)} must be a string")
    if ("context" in obj) == ("path" in obj):
        raise SuiteFileError(f"{where}: give exactly one of context (text) or path (file or dir)")
    if "path" in obj:
        context = _load_path(str(obj["path"]), base, where)
    else:
        context = obj["context"]
        if not (
            isinstance(context, str)
            or (isinstance(context, list) and all(isinstance(x, str) for x in context))
        ):
            raise SuiteFileError(f"{where}: context must be a string or a list of strings")
    scorer = obj.get("scorer", "contains")
    if scorer not in SCORERS:
        raise SuiteFileError(f"{where}: unknown scorer {scorer!r}; scorers: {', '.join(SCORERS)}")
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise SuiteFileError(f"{where}: meta must be an object")
    if "id" in obj:
        meta = {**meta, "id": str(obj["id"])}
    chars = len(context) if isinstance(context, str) else sum(len(x) for x in context)
    size = max(1, chars // CHARS_PER_TOKEN)
    return Task(suite, size, index, 0, context, obj["query"], obj["answer"], scorer, meta)


def load_suite(path: str | Path, name: str | None = None) -> list[Task]:
    """The tasks of a JSONL suite file; the suite's name is the file's stem by default."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SuiteFileError(f"cannot read suite file {path}: {e.strerror or e}") from e
    suite = name or path.stem
    tasks: list[Task] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise SuiteFileError(f"{where}: not JSON ({e.msg})") from e
        tasks.append(_task(obj, len(tasks), suite, path.parent, where))
    if not tasks:
        raise SuiteFileError(f"suite file {path} has no tasks")
    return tasks


__all__ = ["SuiteFileError", "load_suite"]
