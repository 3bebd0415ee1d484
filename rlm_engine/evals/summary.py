"""The summary of an evaluation: accuracy, cost and latency by arm x suite x size, and
the ``mode="auto"`` threshold the results support.

Accuracy is the mean score over a cell's tasks; a direct run over the model's window
was not sent and scores 0 (the model cannot answer what it cannot read), and is counted
in ``over_window``. Latency percentiles are over runs that were sent.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rlm_engine.evals.arms import ARMS
from rlm_engine.evals.records import NOT_SENT, RunRecord
from rlm_engine.evals.suites import SUITES
from rlm_engine.evals.tasks import CHARS_PER_TOKEN, size_label
from rlm_engine.windows import CHARS_PER_TOKEN as PROMPT_CHARS_PER_TOKEN

#: Accuracy points by which direct may trail rlm and still be "as good" for auto.
TOLERANCE = 0.05
#: All suites together, in tables and plots.
ALL = "all"


@dataclass(frozen=True)
class Cell:
    """One arm on one suite at one size."""

    arm: str
    suite: str
    size: int
    runs: int
    accuracy: float
    mean_cost: float | None
    mean_tokens: float
    p50_latency: float | None
    p95_latency: float | None
    over_window: int
    errors: int
    direct_share: float  # of the runs: answered by the direct path (auto's choice)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _cell(arm: str, suite: str, size: int, recs: list[RunRecord]) -> Cell:
    sent = [r for r in recs if r.status not in NOT_SENT]
    costs = [r.cost for r in recs if r.cost is not None]
    return Cell(
        arm=arm,
        suite=suite,
        size=size,
        runs=len(recs),
        accuracy=sum(r.score for r in recs) / len(recs),
        mean_cost=sum(costs) / len(recs) if costs else None,
        mean_tokens=sum(r.tokens for r in recs) / len(recs),
        p50_latency=percentile([r.latency for r in sent], 50),
        p95_latency=percentile([r.latency for r in sent], 95),
        over_window=len(recs) - len(sent),
        errors=sum(r.status == "error" for r in recs),
        direct_share=sum(r.path == "direct" for r in recs) / len(recs),
    )


def _order(suite: str) -> tuple[int, str]:
    names = [*SUITES, ALL]
    return (names.index(suite), "") if suite in names else (len(SUITES), suite)


def summarize(records: Iterable[RunRecord], *, overall: bool = True) -> list[Cell]:
    """Cells by arm x suite x size (and, with ``overall``, x ``"all"`` suites)."""
    groups: dict[tuple[str, str, int], list[RunRecord]] = defaultdict(list)
    for r in records:
        groups[(r.arm, r.suite, r.size)].append(r)
        if overall and r.suite in SUITES:
            groups[(r.arm, ALL, r.size)].append(r)
    arm_rank = {a: i for i, a in enumerate(ARMS)}
    keys = sorted(groups, key=lambda k: (_order(k[1]), k[2], arm_rank.get(k[0], 99), k[0]))
    return [_cell(a, s, n, groups[(a, s, n)]) for a, s, n in keys]


def _money(c: float | None) -> str:
    return "n/a" if c is None else f"${c:.4f}"


def _secs(s: float | None) -> str:
    return "-" if s is None else f"{s:.2f}s"


def format_table(cells: Sequence[Cell]) -> str:
    """A fixed-width table: one line per cell."""
    head = (
        "suite",
        "size",
        "arm",
        "runs",
        "accuracy",
        "mean cost",
        "mean tokens",
        "p50",
        "p95",
        "notes",
    )
    rows = [head]
    for c in cells:
        notes = []
        if c.over_window:
            notes.append(f"{c.over_window} over window")
        if c.errors:
            notes.append(f"{c.errors} errors")
        if c.arm == "auto":
            notes.append(f"direct {c.direct_share:.0%}")
        rows.append(
            (
                c.suite,
                size_label(c.size) if c.size else "-",
                c.arm,
                str(c.runs),
                f"{c.accuracy:.2f}",
                _money(c.mean_cost),
                f"{c.mean_tokens:,.0f}",
                _secs(c.p50_latency),
                _secs(c.p95_latency),
                ", ".join(notes),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass(frozen=True)
class Threshold:
    """What the results say about ``mode="auto"``."""

    #: The largest size measured at which direct is as accurate as rlm (None: at none).
    size: int | None
    #: ``direct_threshold_tokens`` to set (the engine measures the framed prompt at 3.5
    #: characters per token; the suites' sizes are at 4), or None.
    tokens: int | None
    text: str


def recommend_threshold(records: Iterable[RunRecord]) -> Threshold:
    """The largest context size up to which direct is within :data:`TOLERANCE` of rlm on
    every size measured (all built-in suites together), as a ``direct_threshold_tokens``."""
    cells = {(c.arm, c.size): c for c in summarize(records) if c.suite == ALL}
    sizes = sorted(
        {
            n
            for a, n in cells
            if a in ("direct", "rlm") and (("direct", n) in cells and ("rlm", n) in cells)
        }
    )
    if not sizes:
        return Threshold(
            None, None, "run both the direct and the rlm arm on built-in suites to get a threshold"
        )
    best = None
    for n in sizes:
        d, r = cells[("direct", n)], cells[("rlm", n)]
        if d.over_window or d.accuracy + TOLERANCE < r.accuracy:
            break
        best = n
    detail = "; ".join(
        f"{size_label(n)}: direct {cells[('direct', n)].accuracy:.2f} vs rlm {cells[('rlm', n)].accuracy:.2f}"
        for n in sizes
    )
    if best is None:
        return Threshold(
            None,
            None,
            f"the RLM loop is more accurate at every size measured ({detail}): keep mode='rlm', "
            "or measure smaller sizes",
        )
    tokens = int(best * CHARS_PER_TOKEN / PROMPT_CHARS_PER_TOKEN) + 500
    where = "every size measured" if best == sizes[-1] else f"sizes up to {size_label(best)}"
    return Threshold(
        best,
        tokens,
        f"direct is within {TOLERANCE:.2f} of rlm at {where} ({detail}): "
        f"RLM(mode='auto', direct_threshold_tokens={tokens}) or "
        f"rlm run --mode auto --direct-threshold-tokens {tokens}",
    )


__all__ = [
    "ALL",
    "TOLERANCE",
    "Cell",
    "Threshold",
    "format_table",
    "percentile",
    "recommend_threshold",
    "summarize",
]
