"""What a batch shows while it runs (done / failed / tokens / cost) and the summary after.

On a terminal one live status line; elsewhere (CI logs, pipes) a plain line at each tenth
of the batch. The summary counts rows by status, tokens, cost and speed, and is also
returned by ``run_batch`` (:class:`BatchSummary`), so scripts read the same numbers.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from rlm_engine.batch.results import RowResult
from rlm_engine.progress import fmt_cost, fmt_seconds, fmt_tokens


@dataclass
class BatchSummary:
    """A batch's outcome: the rows run now (``results``) and their totals."""

    rows: int  # rows in the input
    skipped: int  # already in the output file (a resumed batch)
    executor: str
    out: str | None = None
    results: list[RowResult] = field(default_factory=list)
    wall_seconds: float = 0.0
    #: Seconds spent starting the executor (Ray's cluster), not counted in ``wall_seconds``.
    startup_seconds: float = 0.0

    @property
    def done(self) -> int:
        return len(self.results)

    @property
    def by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts

    @property
    def failed(self) -> int:
        """Rows that ended in an error (other non-final statuses are answers within limits)."""
        return sum(r.status == "error" for r in self.results)

    @property
    def judged(self) -> int:
        return sum(r.correct is not None for r in self.results)

    @property
    def correct(self) -> int:
        return sum(r.correct is True for r in self.results)

    @property
    def total_tokens(self) -> int:
        return sum(r.total_tokens for r in self.results)

    @property
    def calls(self) -> int:
        return sum(int(r.usage.get("calls") or 0) for r in self.results)

    @property
    def cost(self) -> float | None:
        costs = [r.cost for r in self.results if r.cost is not None]
        return sum(costs) if costs else None

    @property
    def rows_per_second(self) -> float:
        return self.done / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def table(self) -> Table:
        """The summary as a rich table (printed by ``rlm batch`` at the end)."""
        t = Table(title=f"rlm batch: {self.done} row(s) run ({self.executor})", show_header=False)
        t.add_column("", style="bold")
        t.add_column("")
        t.add_row(
            "rows",
            f"{self.rows:,} in the input, {self.skipped:,} already done, {self.done:,} run now",
        )
        statuses = ", ".join(f"{k} {v:,}" for k, v in sorted(self.by_status.items())) or "-"
        t.add_row("status", statuses)
        if self.failed:
            t.add_row(
                "failed", f"{self.failed:,} (status error; each has its error in the results)"
            )
        if self.judged:
            t.add_row(
                "correct",
                f"{self.correct:,} of {self.judged:,} with an expected answer "
                f"({self.correct / self.judged:.0%})",
            )
        t.add_row("LM calls / tokens", f"{self.calls:,} / {fmt_tokens(self.total_tokens)}")
        t.add_row("cost", fmt_cost(self.cost))
        t.add_row(
            "time",
            f"{fmt_seconds(self.wall_seconds)} ({self.rows_per_second:.2f} rows/s)"
            + (f", startup {fmt_seconds(self.startup_seconds)}" if self.startup_seconds else ""),
        )
        if self.out:
            t.add_row("results", self.out)
        return t

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "skipped": self.skipped,
            "done": self.done,
            "by_status": self.by_status,
            "failed": self.failed,
            "correct": self.correct,
            "judged": self.judged,
            "calls": self.calls,
            "total_tokens": self.total_tokens,
            "cost": self.cost,
            "wall_seconds": round(self.wall_seconds, 3),
            "startup_seconds": round(self.startup_seconds, 3),
            "rows_per_second": round(self.rows_per_second, 3),
            "executor": self.executor,
            "out": self.out,
        }


class BatchProgress:
    """Live progress of a batch on ``stream``; ``update`` is thread-safe."""

    def __init__(self, total: int, stream: IO[str], *, enabled: bool = True) -> None:
        self.total = total
        self.enabled = enabled and total > 0
        self.console = Console(file=stream, stderr=True)
        self.done = self.failed = self.tokens = 0
        self.cost: float | None = None
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._next_line = 0

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        return (
            f"{self.done:,}/{self.total:,} done · {self.failed:,} failed · "
            f"{fmt_tokens(self.tokens)} tokens · {fmt_cost(self.cost)} · "
            f"{fmt_seconds(elapsed)} ({rate:.2f} rows/s)"
        )

    def __enter__(self) -> BatchProgress:
        self.started = time.monotonic()
        if self.enabled and self.console.is_terminal:
            self._live = Live(Text(self.line()), console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def update(self, result: RowResult) -> None:
        with self._lock:
            self.done += 1
            self.failed += result.status == "error"
            self.tokens += result.total_tokens
            if result.cost is not None:
                self.cost = (self.cost or 0.0) + result.cost
            if not self.enabled:
                return
            if self._live is not None:
                self._live.update(Text(self.line()))
            elif self.done >= self._next_line or self.done == self.total:
                self.console.print(f"rlm: batch {self.line()}", highlight=False)
                self._next_line = self.done + max(1, self.total // 10)

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None


__all__ = ["BatchProgress", "BatchSummary"]
