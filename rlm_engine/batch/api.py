"""``run_batch``: many completions, locally or on Ray, into one resumable results file.

Everything is checked before the first LM call (rows, options, the results file), so a
typo never costs a half-run batch. Only this process writes results (see
:mod:`rlm_engine.batch.output`), which is what makes every row exactly-once.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, Literal

from rlm_engine.aio import run_sync
from rlm_engine.batch.output import ResultWriter
from rlm_engine.batch.progress import BatchProgress, BatchSummary
from rlm_engine.batch.results import RowResult
from rlm_engine.batch.rows import BatchRow, load_rows
from rlm_engine.clients.rate_limit import LocalRateLimiter, RateLimits, rate_limits
from rlm_engine.config import RLMConfig, make_config

Executor = Literal["local", "ray"]
EXECUTORS = ("local", "ray")
#: Rows in flight at once, by default (each row's own sub-calls are bounded by
#: ``max_concurrency``).
DEFAULT_BATCH_CONCURRENCY = 16


def _check(executor: str, concurrency: int) -> None:
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")


class _Batch:
    """One batch, checked and ready: the rows still to run, the writer, the display."""

    def __init__(
        self,
        rows: str | Path | Iterable[Any],
        *,
        executor: str,
        address: str | None,
        concurrency: int,
        out: str | Path | None,
        limits: RateLimits,
        progress: bool | IO[str],
        config: RLMConfig,
    ) -> None:
        _check(executor, concurrency)
        batch = load_rows(rows)
        self.executor, self.address, self.concurrency = executor, address, concurrency
        self.config, self.limits = config, limits
        self.writer = ResultWriter(out) if out is not None else None
        done = self.writer.done if self.writer else set()
        self.todo = [r for r in batch if r.id not in done]
        self.summary = BatchSummary(
            rows=len(batch),
            skipped=len(batch) - len(self.todo),
            executor=executor,
            out=str(self.writer.path) if self.writer else None,
        )
        stream = progress if not isinstance(progress, bool) else sys.stderr
        self.display = BatchProgress(len(self.todo), stream, enabled=progress is not False)
        self._seen: set[str] = set()

    def on_result(self, result: RowResult) -> None:
        """Keep one result per row (a second one, from a retried task, is dropped)."""
        if result.id in self._seen or (self.writer is not None and not self.writer.write(result)):
            return
        self._seen.add(result.id)
        self.summary.results.append(result)
        self.display.update(result)

    async def run_local(self) -> None:
        from rlm_engine.batch.local import run_local

        limiter = LocalRateLimiter(self.limits) if self.limits else None
        with self.display:
            started = time.monotonic()
            await run_local(
                self.todo,
                self.config,
                concurrency=self.concurrency,
                limiter=limiter,
                on_result=self.on_result,
            )
            self.summary.wall_seconds = time.monotonic() - started

    def run_ray(self) -> None:
        from rlm_engine.batch.ray_executor import run_ray

        run_ray(
            self.todo,
            self.config,
            address=self.address,
            concurrency=self.concurrency,
            limits=self.limits,
            on_result=self.on_result,
            summary=self.summary,
            display=self.display,
        )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _batch(
    rows: str | Path | Iterable[Any],
    executor: str,
    address: str | None,
    concurrency: int,
    out: str | Path | None,
    requests_per_minute: float | None,
    tokens_per_minute: float | None,
    model_rate_limits: RateLimits | None,
    progress: bool | IO[str],
    config: RLMConfig | None,
    options: dict[str, Any],
) -> _Batch:
    return _Batch(
        rows,
        executor=executor,
        address=address,
        concurrency=concurrency,
        out=out,
        limits=rate_limits(requests_per_minute, tokens_per_minute, model_rate_limits),
        progress=progress,
        config=make_config(config, **options),
    )


async def arun_batch(
    rows: str | Path | Iterable[Any],
    *,
    executor: Executor = "local",
    address: str | None = None,
    concurrency: int = DEFAULT_BATCH_CONCURRENCY,
    out: str | Path | None = None,
    requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
    model_rate_limits: RateLimits | None = None,
    progress: bool | IO[str] = False,
    config: RLMConfig | None = None,
    **options: Any,
) -> BatchSummary:
    """Async form of :func:`run_batch` (Ray's driver loop runs in a worker thread)."""
    batch = _batch(
        rows, executor, address, concurrency, out, requests_per_minute, tokens_per_minute,
        model_rate_limits, progress, config, options,
    )  # fmt: skip
    try:
        if executor == "ray":
            await asyncio.to_thread(batch.run_ray)
        else:
            await batch.run_local()
    finally:
        batch.close()
    return batch.summary


def run_batch(
    rows: str | Path | Iterable[Any],
    *,
    executor: Executor = "local",
    address: str | None = None,
    concurrency: int = DEFAULT_BATCH_CONCURRENCY,
    out: str | Path | None = None,
    requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
    model_rate_limits: RateLimits | None = None,
    progress: bool | IO[str] = False,
    config: RLMConfig | None = None,
    **options: Any,
) -> BatchSummary:
    """Run one completion per row; see the :mod:`rlm_engine.batch` docstring."""
    batch = _batch(
        rows, executor, address, concurrency, out, requests_per_minute, tokens_per_minute,
        model_rate_limits, progress, config, options,
    )  # fmt: skip
    try:
        if executor == "ray":
            batch.run_ray()  # in this thread: Ray installs its signal handlers in the main one
        else:
            run_sync(batch.run_local())
    finally:
        batch.close()
    return batch.summary


__all__ = ["DEFAULT_BATCH_CONCURRENCY", "EXECUTORS", "BatchRow", "arun_batch", "run_batch"]
