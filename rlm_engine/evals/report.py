"""The HTML report of an evaluation: one self-contained file that opens offline.

Plots (inline SVG, :mod:`.plots`): accuracy against context length per arm, for all
built-in suites together (like the RLM paper's first figure) and per suite; mean cost
(or mean tokens, when no price is known) against length. Then the ``mode="auto"``
threshold the results support and the full summary table. No script, font, stylesheet
or image is fetched. A report made from the scripted models says, at its top, that its
numbers are a simulation and no result about any model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

from rlm_engine.evals.plots import line_chart
from rlm_engine.evals.records import RunRecord
from rlm_engine.evals.summary import ALL, Cell, format_table, recommend_threshold, summarize
from rlm_engine.evals.tasks import size_label

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1000px;color:#1d2733;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.sim{background:#fff4d6;border:1px solid #e0b84c;padding:10px 14px;border-radius:6px;
margin:12px 0}
.meta{color:#5b6773}.charts{display:flex;flex-wrap:wrap;gap:12px}
.chart{background:#fff;border:1px solid #dde3e8;border-radius:6px}
.chart .title{font-weight:600;font-size:13px}.chart .tick,.chart .legend{font-size:11px;fill:#3a4652}
.chart .axis{font-size:11px;fill:#5b6773}.chart .grid{stroke:#eef1f4}
table{border-collapse:collapse;font-size:12.5px}td,th{padding:3px 10px;border-bottom:1px solid #eef1f4;
text-align:right}td:nth-child(-n+3),th:nth-child(-n+3){text-align:left}
th{background:#f5f7f9}.threshold{background:#eef6f8;padding:10px 14px;border-radius:6px}
pre{background:#f5f7f9;padding:8px;overflow:auto}
"""


def _series(cells: Sequence[Cell], suite: str, value: str) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for c in cells:
        if c.suite != suite or not c.size:
            continue
        v = getattr(c, value)
        if v is None:
            continue
        out.setdefault(c.arm, []).append((float(c.size), float(v)))
    return {k: sorted(v) for k, v in out.items()}


def _fmt_size(x: float) -> str:
    return size_label(int(x))


def _table(cells: Sequence[Cell]) -> str:
    head = [
        "suite",
        "size",
        "arm",
        "runs",
        "accuracy",
        "mean cost",
        "mean tokens",
        "p50 latency",
        "p95 latency",
        "over window",
        "errors",
        "direct share",
    ]
    rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for c in cells:
        vals = [
            c.suite,
            size_label(c.size) if c.size else "-",
            c.arm,
            str(c.runs),
            f"{c.accuracy:.2f}",
            "n/a" if c.mean_cost is None else f"${c.mean_cost:.4f}",
            f"{c.mean_tokens:,.0f}",
            "-" if c.p50_latency is None else f"{c.p50_latency:.2f} s",
            "-" if c.p95_latency is None else f"{c.p95_latency:.2f} s",
            str(c.over_window),
            str(c.errors),
            f"{c.direct_share:.0%}",
        ]
        rows.append("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in vals) + "</tr>")
    return '<table id="summary">' + "".join(rows) + "</table>"


def render(records: Iterable[RunRecord], meta: dict[str, Any] | None = None) -> str:
    """The report as one HTML document."""
    records = list(records)
    meta = meta or {}
    cells = summarize(records)
    suites = list(dict.fromkeys(c.suite for c in cells if c.size and c.suite != ALL))
    has_cost = any(c.mean_cost for c in cells)
    cost_value, cost_label = (
        ("mean_cost", "mean cost (USD)") if has_cost else ("mean_tokens", "mean tokens")
    )
    acc = [
        line_chart(
            "Accuracy vs context length, all suites",
            _series(cells, ALL, "accuracy"),
            y_label="accuracy",
            y_max=1.0,
            x_fmt=_fmt_size,
            y_fmt=lambda v: f"{v:.2f}",
        ),
        *(
            line_chart(
                f"Accuracy: {s}",
                _series(cells, s, "accuracy"),
                y_label="accuracy",
                y_max=1.0,
                x_fmt=_fmt_size,
                y_fmt=lambda v: f"{v:.2f}",
            )
            for s in suites
        ),
    ]
    cost = line_chart(
        f"{cost_label.capitalize()} vs context length, all suites",
        _series(cells, ALL, cost_value),
        y_label=cost_label,
        x_fmt=_fmt_size,
        y_fmt=(lambda v: f"${v:.3g}") if has_cost else (lambda v: f"{v / 1000:.0f}k"),
    )
    latency = line_chart(
        "p50 latency vs context length, all suites",
        _series(cells, ALL, "p50_latency"),
        y_label="seconds",
        x_fmt=_fmt_size,
        y_fmt=lambda v: f"{v:.2g}",
    )
    threshold = recommend_threshold(records)
    simulated = bool(meta.get("simulated"))
    banner = (
        '<p class="sim" id="simulated"><b>Simulation.</b> These runs used the offline scripted '
        "models: the direct model's accuracy is a built-in decay with length and its window a "
        "setting (rlm_engine.scripted.direct_sim). The numbers show the harness working and say "
        "nothing about any real model.</p>"
        if simulated
        else ""
    )
    models = ", ".join(
        f"{k}: {escape(str(meta[k]))}"
        for k in ("backend", "model", "sub_model", "window")
        if meta.get(k)
    )
    n = len(records)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>rlm eval report</title><style>{_CSS}</style></head>
<body>
<h1>Does an RLM help on this model?</h1>
<p class="meta">{n:,} runs · {escape(models)}</p>
{banner}
<h2>Accuracy vs context length</h2>
<div class="charts" id="accuracy">{"".join(acc)}</div>
<h2>Cost and latency vs context length</h2>
<div class="charts" id="cost">{cost}{latency}</div>
<h2>The auto threshold</h2>
<p class="threshold" id="threshold">{escape(threshold.text)}</p>
<h2>Summary</h2>
{_table(cells)}
<h2>As text</h2>
<pre>{escape(format_table(cells))}</pre>
</body></html>
"""


def write_report(
    records: Iterable[RunRecord], path: str | Path, meta: dict[str, Any] | None = None
) -> Path:
    """Write :func:`render` to ``path`` and return it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(records, meta), encoding="utf-8")
    return out


__all__ = ["render", "write_report"]
