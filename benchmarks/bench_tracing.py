"""Tracing: what it costs with no tracer attached, and how large a trace is.

    uv run python benchmarks/bench_tracing.py [--size-mb 2] [--repeat 5] [--markdown FILE]

The quickstart's job (one fact in a generated document, 2 MB by default) answered by the
offline scripted model in this process, so the times measure the engine and the tracing,
not a network. Reported, as the median of ``--repeat`` runs:

- ``RLMChatModel.invoke`` with no callback handler, with the run tree switched off
  entirely (the code path before tracing existed) and as shipped: the difference is the
  cost of tracing for users who do not trace;
- the same call under ``collect_runs`` (a LangChain tracer attached): time, runs, and the
  trace's size (JSON of every run's inputs, outputs and error, what a tracer uploads);
- ``RLM.completion`` with and without an OpenTelemetry provider (in-memory exporter,
  message content captured): time, spans, and the spans' size as JSON;
- the cost of one progress event for an inactive run tree (no handler), in microseconds.

``--size-mb 217 --size-only`` measures the trace size of the issue's large run (one traced
call of each kind; budgets raised for its thousands of sub-calls; ~2 GB of memory).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from langchain_core.tracers.context import collect_runs  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from quickstart import make_haystack  # noqa: E402

import rlm_integrations.langchain.chat_model as chat_module  # noqa: E402
from rlm_engine import RLM  # noqa: E402
from rlm_integrations.langchain import RLMChatModel  # noqa: E402
from rlm_integrations.langchain.tracing import RunTree  # noqa: E402

QUERY = "What is the vault access code?"
OPTS: dict[str, Any] = {"max_iterations": 10, "environment": "local"}


def median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def chat_model() -> RLMChatModel:
    return RLMChatModel(backend="scripted", **OPTS)


class _Untraced(RunTree):
    """The run tree switched off: no counting, no runs (the path before tracing)."""

    def __call__(self, event: dict[str, Any]) -> None:
        return None


def _no_tree(target: Any, config: Any, root: Any, sub: Any) -> RunTree:
    return _Untraced(None)


def run_tree_size(runs: list[Any]) -> tuple[int, int]:
    count = size = 0
    stack = list(runs)
    while stack:
        run = stack.pop()
        count += 1
        payload = {"inputs": run.inputs, "outputs": run.outputs, "error": run.error}
        size += len(json.dumps(payload, default=str))
        stack.extend(run.child_runs)
    return count, size


def event_cost() -> float:
    tree = RunTree(None)
    event = {
        "event": "subcall_end",
        "run_id": "r",
        "call_id": "r.1",
        "function": "llm_query",
        "input_tokens": 10,
        "output_tokens": 2,
    }
    n = 200_000
    started = time.perf_counter()
    for _ in range(n):
        tree(event)
    return (time.perf_counter() - started) / n * 1e6


def timings(
    invoke: Callable[[], Any], repeat: int, rows: list[tuple[str, str]], secret: str
) -> None:
    """The no-tracer cost: the same call with the run tree switched off and as shipped,
    alternated so that load on a shared machine hits both alike."""
    assert secret in str(invoke().content)  # warm up once (imports, first REPL)
    shipped = chat_module._run_tree
    off: list[float] = []
    on: list[float] = []
    for _ in range(repeat):
        chat_module._run_tree = _no_tree  # type: ignore[assignment]
        try:
            off.append(median_time(invoke, 1)[0])
        finally:
            chat_module._run_tree = shipped
        on.append(median_time(invoke, 1)[0])
    events = count_events(invoke)
    per_event = event_cost()
    m_off, m_on = statistics.median(off), statistics.median(on)
    rows.append(
        ("RLMChatModel.invoke, no handler, run tree switched off", f"{m_off * 1000:.1f} ms")
    )
    rows.append(("RLMChatModel.invoke, no handler, as shipped", f"{m_on * 1000:.1f} ms"))
    rows.append(
        (
            "difference of the medians (run-to-run spread of either)",
            f"{(m_on - m_off) * 1000:+.1f} ms ({(max(off) - min(off)) * 1000:.0f} ms)",
        )
    )
    rows.append(
        (
            "what the inactive tree adds: events per call x cost per event",
            f"{events} x {per_event:.2f} µs = {events * per_event / 1000:.3f} ms",
        )
    )


def count_events(invoke: Callable[[], Any]) -> int:
    seen = 0
    original = RunTree.__call__

    def counting(self: RunTree, event: dict[str, Any]) -> None:
        nonlocal seen
        seen += 1
        original(self, event)

    RunTree.__call__ = counting  # type: ignore[method-assign]
    try:
        invoke()
    finally:
        RunTree.__call__ = original  # type: ignore[method-assign]
    return seen


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--size-only", action="store_true", help="trace sizes, no timings")
    args = parser.parse_args()
    if args.size_only:
        args.repeat = 1
        OPTS.update(max_llm_calls=20_000, max_total_tokens=None, max_cost=None)
    os.environ.pop("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", None)
    document, secret = make_haystack(int(args.size_mb * 1_000_000))
    rows: list[tuple[str, str]] = []

    def invoke() -> Any:
        return chat_model().invoke(QUERY, context=document)

    if not args.size_only:
        timings(invoke, args.repeat, rows, secret)

    def traced() -> Any:
        with collect_runs() as cb:
            invoke()
        return cb.traced_runs

    t_traced, runs = median_time(traced, args.repeat)
    count, size = run_tree_size(runs)
    if not args.size_only:
        rows.append(("RLMChatModel.invoke under collect_runs", f"{t_traced * 1000:.1f} ms"))
    rows.append(("LangChain runs in the tree / trace size (JSON)", f"{count} / {size:,} bytes"))

    rlm = RLM(backend="scripted", **OPTS)
    t_plain, res = (
        (0.0, None)
        if args.size_only
        else median_time(lambda: rlm.completion(document, QUERY), args.repeat)
    )
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "true"
    traced_rlm = RLM(backend="scripted", tracer_provider=provider, **OPTS)

    def otel_run() -> Any:
        exporter.clear()
        return traced_rlm.completion(document, QUERY)

    t_otel, traced_res = median_time(otel_run, args.repeat)
    res = res or traced_res
    spans = exporter.get_finished_spans()
    span_size = sum(len(s.to_json(indent=None)) for s in spans)
    if not args.size_only:
        rows.append(("RLM.completion, no OpenTelemetry", f"{t_plain * 1000:.1f} ms"))
        rows.append(
            ("RLM.completion, OpenTelemetry (in-memory, content on)", f"{t_otel * 1000:.1f} ms")
        )
    rows.append(("spans / their size (JSON)", f"{len(spans)} / {span_size:,} bytes"))
    u = res.usage.total
    title = (
        f"Tracing, {len(document) / 1e6:.1f} MB context, scripted model in process "
        f"({u.calls} LM calls, {len(res.iterations)} iterations), median of {args.repeat}"
    )
    lines = [f"### {title}", "", "| measured | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
