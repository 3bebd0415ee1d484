"""The local executor: every row on one asyncio event loop, at most ``concurrency`` at once.

Completions are I/O-bound (they wait for the LM), so one loop runs many: ``concurrency``
workers take rows in input order and hand each result over as soon as it is ready.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from rlm_engine.batch.complete import complete_row
from rlm_engine.batch.results import RowResult
from rlm_engine.batch.rows import BatchRow
from rlm_engine.clients.rate_limit import RateLimiter
from rlm_engine.config import RLMConfig


async def run_local(
    rows: Sequence[BatchRow],
    config: RLMConfig,
    *,
    concurrency: int,
    limiter: RateLimiter | None,
    on_result: Callable[[RowResult], None],
) -> None:
    """Run ``rows``; ``on_result`` gets each row's result once, in completion order."""
    pending = iter(rows)

    async def worker() -> None:
        for row in pending:  # one shared iterator: each row is taken by one worker
            on_result(await complete_row(row, config, limiter))

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(rows))))))


__all__ = ["run_local"]
