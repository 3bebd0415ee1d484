"""``run_batch``: many completions, locally or on Ray, into one resumable results file.

Everything is checked before the first LM call (rows, options, the results file), so a
typo never costs a half-run batch. Only this process writes results (see
:mod:`rlm_engine.batch.output`), which is what makes every row exactly-once.
"""

from __future__ import annotations

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
    """Async form of :func:`run_batch` (the Ray driver loop runs in a thread)."""
    _check(executor, concurrency)
    cfg = make_config(config, **options)
    batch = load_rows(rows)
    limits = rate_limits(requests_per_minute, tokens_per_minute, model_rate_limits)
    writer = ResultWriter(out) if out is not None else None
    todo = [r for r in batch if writer is None or r.id not in writer.done]
    summary = BatchSummary(
        rows=len(batch),
        skipped=len(batch) - len(todo),
        executor=executor,
        out=str(writer.path) if writer else None,
    )
    stream = progress if not isinstance(progress, bool) else sys.stderr
    display = BatchProgress(len(todo), stream, enabled=progress is not False)

    def on_result(result: RowResult) -> None:
        if writer is not None and not writer.write(result):
            return  # a second result for a written id (a retried task): dropped
        if writer is None and any(r.id == result.id for r in summary.results):
            return
        summary.results.append(result)
        display.update(result)

    try:
        if executor == "local":
            limiter = LocalRateLimiter(limits) if limits else None
            from rlm_engine.batch.local import run_local

            with display:
                started = time.monotonic()
                await run_local(
                    todo, cfg, concurrency=concurrency, limiter=limiter, on_result=on_result
                )
                summary.wall_seconds = time.monotonic() - started
        else:
            import asyncio

            from rlm_engine.batch.ray_executor import run_ray

            await asyncio.to_thread(
                run_ray,
                todo,
                cfg,
                address=address,
                concurrency=concurrency,
                limits=limits,
                on_result=on_result,
                summary=summary,
                display=display,
            )
    finally:
        if writer is not None:
            writer.close()
    return summary


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
    return run_sync(
        arun_batch(
            rows,
            executor=executor,
            address=address,
            concurrency=concurrency,
            out=out,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            model_rate_limits=model_rate_limits,
            progress=progress,
            config=config,
            **options,
        )
    )


__all__ = ["DEFAULT_BATCH_CONCURRENCY", "EXECUTORS", "BatchRow", "arun_batch", "run_batch"]
