"""Running an evaluation's runs on the batch runner (:mod:`rlm_engine.batch`), which is
how ``rlm eval --executor ray`` spreads them over a Ray cluster.

One batch per (cell, arm): the batch runs one engine configuration, and each arm is one
(:func:`~.arms.arm_config`). Rows are the cell's tasks, with the run key as their id. A
direct run over the window is recorded here without being sent, as on the local runner.

A batch row reports its completion's totals, not its path or its sub-calls, so two
fields are derived: ``path`` is ``direct`` when the row ran no iteration (the direct
path runs none, the loop at least one), and ``sub_calls`` is the row's LM calls less its
root turns. The local runner records both exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

from rlm_engine.config import RLMConfig
from rlm_engine.evals import arms as arms_mod
from rlm_engine.evals.records import RunRecord, run_key
from rlm_engine.evals.scorers import score
from rlm_engine.evals.tasks import Task


async def run_on_batch(
    arm: str,
    tasks: Sequence[Task],
    config: RLMConfig,
    window: arms_mod.Window,
    *,
    executor: str,
    concurrency: int,
) -> list[RunRecord]:
    """Every task of ``tasks`` with ``arm``, on the batch runner's ``executor``."""
    from rlm_engine.batch import BatchRow, arun_batch

    records: list[RunRecord] = []
    by_id: dict[str, Task] = {}
    rows = []
    for task in tasks:
        skipped = arms_mod.over_window(arm, task, window)
        if skipped is not None:
            records.append(skipped)
            continue
        key = run_key(arm, task.suite, task.size, task.seed, task.index)
        by_id[key] = task
        rows.append(BatchRow(id=key, query=task.query, context=task.context, expected=task.answer))
    if not rows:
        return records
    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be local or ray, got {executor!r}")
    summary = await arun_batch(
        rows,
        executor="ray" if executor == "ray" else "local",
        concurrency=concurrency,
        config=arms_mod.arm_config(arm, config),
    )
    for res in summary.results:
        task = by_id[res.id]
        calls = int(res.usage.get("calls") or 0)
        direct = res.iterations == 0 and res.status != "error"
        rec = RunRecord(
            arm, task.suite, task.size, task.seed, task.index, res.status,
            answer=res.answer,
            expected=task.answer,
            input_tokens=int(res.usage.get("input_tokens") or 0),
            output_tokens=int(res.usage.get("output_tokens") or 0),
            cost=res.cost,
            latency=res.duration,
            iterations=res.iterations,
            sub_calls=0 if direct else max(0, calls - res.iterations),
            path="direct" if direct else "rlm",
            error=res.error,
            extra={"executor": executor, "derived": ["path", "sub_calls"]},
        )  # fmt: skip
        rec.score = score(rec.answer, task)
        records.append(rec)
    return records


__all__ = ["run_on_batch"]
