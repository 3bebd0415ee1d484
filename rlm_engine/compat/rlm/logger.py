"""``RLMLogger`` with the paper authors' library's constructor and trajectory access.

``RLMLogger()`` keeps each completion's trajectory in memory (``completion.metadata``,
``get_trajectory()``); ``RLMLogger(log_dir="./logs")`` also writes it as the engine's
JSONL trace (``rlm view`` shows it). It is the engine's logger with one more sink: every
record the engine writes is also kept, so the two never disagree.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from rlm_engine.logger import RLMLogger as EngineLogger


class RLMLogger(EngineLogger):
    """Trajectory of the latest completion in memory; also on disk when ``log_dir`` is set."""

    def __init__(self, log_dir: str | os.PathLike[str] | None = None, file_name: str = "rlm"):
        if file_name != "rlm":
            raise ValueError(
                f"file_name={file_name!r} has no equivalent here: trace files are named "
                "rlm_<time>_<run_id>.jsonl, one per completion; choose their folder with log_dir"
            )
        if log_dir is not None:
            super().__init__(log_dir)
        else:  # in memory only: the engine logger's state, without a folder
            self.log_dir = None  # type: ignore[assignment]
            self.extra_secrets = []
            self._paths = {}
            self._lock = threading.Lock()
            self.last_path = None
        self._memory_lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._iterations: list[dict[str, Any]] = []
        self._result: dict[str, Any] | None = None

    def _write(self, run_id: str, record: dict[str, Any]) -> None:
        with self._memory_lock:
            kind = record.get("type")
            if kind == "metadata":
                self._metadata, self._iterations, self._result = dict(record), [], None
            elif kind == "iteration":
                self._iterations.append(dict(record))
            elif kind == "result":
                self._result = dict(record)
        if self.log_dir is not None:
            super()._write(run_id, record)

    @property
    def log_file_path(self) -> str | None:
        """The trace file of the latest completion (None in memory-only mode)."""
        return None if self.last_path is None else str(self.last_path)

    def clear_iterations(self) -> None:
        """Forget the iterations kept so far (each completion starts afresh anyway)."""
        with self._memory_lock:
            self._iterations = []

    def get_trajectory(self) -> dict[str, Any] | None:
        """``{"run_metadata", "iterations", "result"}`` of the latest completion, or None."""
        with self._memory_lock:
            if self._metadata is None:
                return None
            return {
                "run_metadata": dict(self._metadata),
                "iterations": list(self._iterations),
                "result": self._result,
            }

    @property
    def iteration_count(self) -> int:
        with self._memory_lock:
            return len(self._iterations)


__all__ = ["RLMLogger"]
