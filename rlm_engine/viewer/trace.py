"""Read a trajectory ``.jsonl`` written by :class:`rlm_engine.logger.RLMLogger`.

Reading is deliberately forgiving: a crashed run leaves no result line and may end in a
half-written line, and that is exactly the trace a user most wants to look at. A run
interrupted with Ctrl-C ends with a partial iteration (``"interrupted": true``) and a
result line of status ``"interrupted"``; it gets a warning saying so. Bad lines
become warnings instead of errors, and totals are recomputed from the iterations so an
incomplete trace still shows what it cost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOTAL_KEYS = ("calls", "input_tokens", "output_tokens", "total_tokens", "cost")


class TraceError(ValueError):
    """The file is not a trajectory at all (missing, empty, or no recognizable line)."""


@dataclass
class Trace:
    """The parsed content of one trajectory file."""

    path: str
    metadata: dict[str, Any] = field(default_factory=dict)
    iterations: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.result is not None


def load_trace(path: str | Path) -> Trace:
    """Parse ``path``; raises :class:`TraceError` when nothing in it is a trace line."""
    p = Path(path)
    if not p.exists():
        raise TraceError(f"trace file not found: {p}")
    if p.is_dir():
        raise TraceError(f"{p} is a directory; pass one .jsonl trace file")
    trace = Trace(path=str(p))
    nested: list[dict[str, Any]] = []
    recognized = 0
    with p.open("r", encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                trace.warnings.append(f"line {lineno}: not valid JSON (truncated write?)")
                continue
            kind = rec.get("type") if isinstance(rec, dict) else None
            if kind == "metadata":
                recognized += 1
                if not trace.metadata:
                    trace.metadata = rec
            elif kind == "iteration":
                recognized += 1
                (nested if int(rec.get("depth") or 0) > 0 else trace.iterations).append(rec)
            elif kind == "result":
                recognized += 1
                trace.result = rec
            else:
                trace.warnings.append(f"line {lineno}: unknown record type {kind!r}")
    if recognized == 0:
        raise TraceError(f"{p} contains no trajectory records (expected RLMLogger .jsonl)")
    if not trace.iterations and nested:
        # Only child iterations were logged at top level; show them rather than nothing.
        trace.iterations = nested
    if not trace.metadata:
        trace.warnings.append("no metadata line: run configuration unknown")
    if trace.result is None:
        trace.warnings.append("no result line: the run did not finish (crashed or still running)")
    elif trace.result.get("status") == "interrupted":
        partial = [it for it in trace.iterations if it.get("interrupted")]
        where = f" during iteration {partial[-1].get('index')}" if partial else ""
        trace.warnings.append(
            f"the run was interrupted (Ctrl-C){where}: "
            + (
                "that iteration is partial (its sub-call prompts and answers are cut to "
                "200 characters); "
                if partial
                else ""
            )
            + "totals are what was counted up to the interruption"
        )
    return trace


def _empty_totals() -> dict[str, Any]:
    return {"calls": 0, "input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "cost": None}


def _add(t: dict[str, Any], inp: Any, out: Any, cost: Any, calls: int = 1) -> None:
    i, o = int(inp or 0), int(out or 0)
    t["calls"] += calls
    t["input_tokens"] += i
    t["output_tokens"] += o
    t["total_tokens"] += i + o
    if cost is not None:
        t["cost"] = (t["cost"] or 0.0) + float(cost)


def subcall_totals(subcall: dict[str, Any]) -> dict[str, Any]:
    """Usage of one sub-call including, for ``rlm_query``, everything its child did."""
    t = _empty_totals()
    children = subcall.get("children") or []
    if children:
        for child in children:
            _add(t, child.get("input_tokens"), child.get("output_tokens"), child.get("cost"))
            for block in child.get("code_blocks") or []:
                for sc in block.get("subcalls") or []:
                    ct = subcall_totals(sc)
                    _add(t, ct["input_tokens"], ct["output_tokens"], ct["cost"], ct["calls"])
    else:
        _add(t, subcall.get("input_tokens"), subcall.get("output_tokens"), subcall.get("cost"))
    return t


def iteration_summary(it: dict[str, Any]) -> dict[str, Any]:
    """Per-iteration numbers the timeline and chart need, without the bulky text."""
    sub = _empty_totals()
    n_sub = errors = 0
    blocks = it.get("code_blocks") or []
    for b in blocks:
        if b.get("error") or b.get("timed_out") or b.get("crashed"):
            errors += 1
        for sc in b.get("subcalls") or []:
            n_sub += 1
            if sc.get("error"):
                errors += 1
            st = subcall_totals(sc)
            _add(sub, st["input_tokens"], st["output_tokens"], st["cost"], st["calls"])
    root_in, root_out = int(it.get("input_tokens") or 0), int(it.get("output_tokens") or 0)
    return {
        "index": it.get("index"),
        "blocks": len(blocks),
        "subcalls": n_sub,
        "errors": errors,
        "final": it.get("final_answer") is not None,
        "root_tokens": root_in + root_out,
        "root_cost": it.get("cost"),
        "sub_tokens": sub["total_tokens"],
        "sub_calls": sub["calls"],
        "sub_cost": sub["cost"],
        "duration": float(it.get("duration") or 0.0),
        "root_latency": float(it.get("root_latency") or 0.0),
        "interrupted": bool(it.get("interrupted")),
    }


def computed_usage(iterations: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Root/sub/total usage recomputed from the iterations (for traces without a result)."""
    root, sub = _empty_totals(), _empty_totals()
    for it in iterations:
        _add(root, it.get("input_tokens"), it.get("output_tokens"), it.get("cost"))
        for b in it.get("code_blocks") or []:
            for sc in b.get("subcalls") or []:
                st = subcall_totals(sc)
                _add(sub, st["input_tokens"], st["output_tokens"], st["cost"], st["calls"])
    total = _empty_totals()
    for part in (root, sub):
        _add(total, part["input_tokens"], part["output_tokens"], part["cost"], part["calls"])
    return {"total": total, "root": root, "sub": sub}
