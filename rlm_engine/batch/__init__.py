"""Batch runs: one RLM completion per row, locally or on a Ray cluster.

::

    from rlm_engine.batch import run_batch

    summary = run_batch(
        rows,                      # a .jsonl path, or dicts / BatchRow: id, context or
                                   # context_path, query, expected (see .rows)
        executor="local",          # "local": one asyncio loop; "ray": one Ray task per row
        address=None,              # Ray: None starts a local cluster (or uses the one this
                                   # process already joined); "auto" or "ray://host:10001"
        concurrency=16,            # rows in flight at once
        out="results.jsonl",       # resumable: ids already there are skipped; None: memory
        requests_per_minute=None,  # one LM rate limit for the whole batch, per model
        tokens_per_minute=None,    # (model_rate_limits={"gpt-5-mini": RateLimit(...)})
        progress=False,            # True: live progress on stderr (or a stream)
        config=None,               # an RLMConfig, and/or its options flat:
        backend="openai", model="gpt-5-mini", max_iterations=20,   # ... every RLM option
    )
    summary.results                # list[RowResult] run now (id, status, answer, error,
                                   # expected, correct, usage, iterations, warnings, duration)
    summary.by_status, summary.failed, summary.correct, summary.total_tokens, summary.cost
    read_results("results.jsonl")  # every row written so far, as RowResult

``arun_batch`` is the same, awaitable. A row that fails records its error
(``status="error"``) and the batch goes on; every row is written to ``out`` exactly once,
also when a Ray worker dies mid-row (its task is retried and only one result is kept).
Results are identical between executors for a deterministic model.

The command line is ``rlm batch INPUT.jsonl --out RESULTS.jsonl`` (``rlm_engine.cli_batch``).
"""

from __future__ import annotations

from rlm_engine.batch.api import DEFAULT_BATCH_CONCURRENCY, EXECUTORS, arun_batch, run_batch
from rlm_engine.batch.output import OutputError, ResultWriter, read_results
from rlm_engine.batch.progress import BatchSummary
from rlm_engine.batch.results import RowResult
from rlm_engine.batch.rows import BatchRow, RowError, load_rows
from rlm_engine.clients.rate_limit import RateLimit

__all__ = [
    "DEFAULT_BATCH_CONCURRENCY",
    "EXECUTORS",
    "BatchRow",
    "BatchSummary",
    "OutputError",
    "RateLimit",
    "ResultWriter",
    "RowError",
    "RowResult",
    "arun_batch",
    "load_rows",
    "read_results",
    "run_batch",
]
