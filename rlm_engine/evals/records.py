"""The JSONL file of an evaluation: one line per run, appended as each run ends.

Appending line by line makes an evaluation resumable: an interrupted ``rlm eval`` run
again with the same output directory skips every (arm, task) already recorded and runs
only the rest; a line cut by a crash is ignored. Lines of ``"type": "meta"`` record each
invocation's settings (backend, models, whether the models were the scripted
simulation), which the report reads.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Statuses of a run that produced no answer because it was never sent.
NOT_SENT = ("over_window",)


@dataclass
class RunRecord:
    """One arm on one task: what it answered, its score and what it cost."""

    arm: str
    suite: str
    size: int
    seed: int
    index: int
    status: str
    score: float = 0.0
    answer: str | None = None
    expected: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    latency: float = 0.0
    iterations: int = 0
    sub_calls: int = 0
    #: Which path answered ("direct" or "rlm"): the auto arm's choice, and why.
    path: str = ""
    path_reason: str = ""
    error: str | None = None
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return run_key(self.arm, self.suite, self.size, self.seed, self.index)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        return {"type": "run", "key": self.key, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


def run_key(arm: str, suite: str, size: int, seed: int, index: int) -> str:
    return f"{arm}|{suite}|{size}|{seed}|{index}"


class RunLog:
    """The ``runs.jsonl`` of an output directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> tuple[list[dict[str, Any]], dict[str, RunRecord]]:
        """Meta lines, and the last record of every run key (cut or foreign lines skipped)."""
        metas: list[dict[str, Any]] = []
        runs: dict[str, RunRecord] = {}
        if not self.path.exists():
            return metas, runs
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the line a crash cut short: that run is run again
                if not isinstance(obj, dict):
                    continue
                if obj.get("type") == "meta":
                    metas.append(obj)
                elif obj.get("type") == "run":
                    try:
                        rec = RunRecord.from_dict(obj)
                    except TypeError:
                        continue
                    runs[rec.key] = rec
        return metas, runs

    def append(self, obj: dict[str, Any]) -> None:
        """One line, flushed and synced, so a crash loses at most the run in flight."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as f:
            if f.tell() > 0:  # a line a crash cut short must not swallow this one
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())


__all__ = ["NOT_SENT", "RunLog", "RunRecord", "run_key"]
