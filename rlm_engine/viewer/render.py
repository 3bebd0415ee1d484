"""Turn a :class:`Trace` into one self-contained HTML file.

The page is a static template plus inlined CSS and JS (package data files next to this
module) plus the trace embedded as JSON in a ``<script type="application/json">`` tag. The
JS builds the DOM lazily from that JSON with ``textContent`` only, so model output can
never become markup. Sub-calls are packed as arrays (keys listed once) because a 100,000
sub-call trace would otherwise spend most of its bytes repeating field names.
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from rlm_engine.viewer.trace import Trace, computed_usage, iteration_summary, load_trace

SUBCALL_FIELDS = (
    "function",
    "prompt",
    "prompt_chars",
    "response",
    "model",
    "depth",
    "input_tokens",
    "output_tokens",
    "cost",
    "latency",
    "error",
    "replayed",
    "children",
    "prompt_sha",
    "extra",
)
SUMMARY_FIELDS = (
    "index",
    "blocks",
    "subcalls",
    "errors",
    "final",
    "root_tokens",
    "root_cost",
    "sub_tokens",
    "sub_calls",
    "sub_cost",
    "duration",
    "root_latency",
    "interrupted",
)
_KNOWN_SUBCALL = frozenset(SUBCALL_FIELDS) - {"extra"}
_MARKER = re.compile(r"/\*@(css|js|data|title)@\*/")
# Characters that could end the <script> element or confuse an HTML parser. They can only
# occur inside JSON strings, where the \uXXXX form is an equivalent escape.
_JSON_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _pack_subcall(sc: dict[str, Any]) -> list[Any]:
    packed = {
        **sc,
        "children": [_pack_iteration(c) for c in sc.get("children") or []],
        "extra": {k: v for k, v in sc.items() if k not in _KNOWN_SUBCALL} or None,
    }
    return [packed.get(k) for k in SUBCALL_FIELDS]


def _pack_iteration(it: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in it.items() if k not in ("type", "run_id", "code_blocks")}
    out["code_blocks"] = [
        {**b, "subcalls": [_pack_subcall(s) for s in b.get("subcalls") or []]}
        for b in it.get("code_blocks") or []
    ]
    return out


def build_payload(trace: Trace) -> dict[str, Any]:
    """The JSON document the page renders from."""
    result = trace.result
    usage: dict[str, Any] | None = (result or {}).get("usage")
    source = "result"
    if not isinstance(usage, dict) or "total" not in usage:
        usage, source = computed_usage(trace.iterations), "computed"
    usage = {k: v for k, v in usage.items() if k != "records"}  # raw ledger: not displayed
    summaries = [iteration_summary(it) for it in trace.iterations]
    for pos, s in enumerate(summaries):
        if s["index"] is None:  # hand-written or foreign traces: number by position
            s["index"] = pos
    return {
        "version": 1,
        "file": Path(trace.path).name,
        "meta": {k: v for k, v in trace.metadata.items() if k != "type"},
        "result": {k: v for k, v in result.items() if k not in ("type", "usage")}
        if result
        else None,
        "usage": usage,
        "usage_source": source,
        "warnings": trace.warnings,
        "subcall_fields": list(SUBCALL_FIELDS),
        "summary_fields": list(SUMMARY_FIELDS),
        "summary": [[s[k] for k in SUMMARY_FIELDS] for s in summaries],
        "iterations": [_pack_iteration(it) for it in trace.iterations],
    }


def embed_json(data: Any) -> str:
    """JSON that is safe verbatim inside ``<script type="application/json">``."""
    return json.dumps(data, separators=(",", ":"), default=str).translate(_JSON_ESCAPES)


def _asset(name: str) -> str:
    return resources.files("rlm_engine.viewer").joinpath(name).read_text(encoding="utf-8")


def render_html(trace: Trace) -> str:
    """The complete HTML document for ``trace``."""
    title = f"RLM trace · {Path(trace.path).name}"
    parts = {
        "css": _asset("viewer.css"),
        "js": _asset("viewer.js"),
        "data": embed_json(build_payload(trace)),
        "title": html.escape(title),
    }
    # One pass, so text inserted for one marker is never scanned for another.
    return _MARKER.sub(lambda m: parts[m.group(1)], _asset("template.html"))


def write_html(trace_path: str | Path, out_path: str | Path | None = None) -> Path:
    """Render ``trace_path`` to ``out_path`` (default: same name with ``.html``)."""
    trace = load_trace(trace_path)
    out = Path(out_path) if out_path else Path(trace_path).with_suffix(".html")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(trace), encoding="utf-8")
    return out
