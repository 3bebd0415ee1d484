"""OpenTelemetry spans of an RLM run, read back from the SDK's in-memory exporter.

The scripted run has a known shape: 3 root iterations, 2 code cells, one ``llm_query`` and
two child RLMs (``rlm_query_batched``) in the first cell, a failing second cell.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from rlm_engine import RLM
from rlm_engine import otel as rlm_otel
from rlm_engine.resources import RunResources
from rlm_engine.scripted.model import ScriptedModel
from rlm_engine.scripted.server import ScriptedServer

ROOT_STEPS = [
    "```repl\nyes = llm_query('Say yes.')\n"
    "sizes = rlm_query_batched(['size?', 'size?'], contexts=['aaa', 'bbbb'])\n```",
    "```repl\nprint('key sk-abcdefghijklmnopqrstuv')\n1/0\n```",
    "FINAL_VAR(sizes)",
]


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    p = TracerProvider()
    p.add_span_processor(SimpleSpanProcessor(exporter))
    return p


@pytest.fixture
def scripted(scripted_model: ScriptedModel, scripted_server: ScriptedServer) -> ScriptedServer:
    scripted_model.add_rule(lambda r: r.is_rlm_root and "Query: go" in r.first_user, ROOT_STEPS)
    scripted_model.add_rule(lambda r: r.is_rlm_root, "```repl\nFINAL(str(len(context)))\n```")
    return scripted_server


def _rlm(openai_kwargs: dict[str, Any], sub_kwargs: dict[str, Any], **kw: Any) -> RLM:
    return RLM(
        backend="openai",
        backend_kwargs=openai_kwargs,
        sub_backend="openai",
        sub_backend_kwargs=sub_kwargs,
        max_depth=2,
        environment="subprocess",
        **kw,
    )


@pytest.fixture
def sub_kwargs(scripted_server: ScriptedServer) -> dict[str, Any]:
    return {"model_name": "scripted-sub", "base_url": scripted_server.base_url, "api_key": "k"}


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    kids = [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]
    return sorted(kids, key=lambda s: s.start_time or 0)


def _shape(spans: list[ReadableSpan], parent: ReadableSpan) -> list[Any]:
    return [(s.name, _shape(spans, s)) for s in _children(spans, parent)]


CHILD = [("rlm.iteration 1", [("chat scripted-sub", []), ("execute_tool repl", [])])]
EXPECTED = [
    (
        "rlm.iteration 1",
        [
            ("chat scripted-root", []),
            (
                "execute_tool repl",
                [
                    ("chat scripted-sub", []),
                    ("invoke_agent rlm", CHILD),
                    ("invoke_agent rlm", CHILD),
                ],
            ),
        ],
    ),
    ("rlm.iteration 2", [("chat scripted-root", []), ("execute_tool repl", [])]),
    ("rlm.iteration 3", [("chat scripted-root", [])]),
]


def test_spans_follow_the_run(
    scripted: ScriptedServer,
    openai_kwargs: dict[str, Any],
    sub_kwargs: dict[str, Any],
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    res = _rlm(openai_kwargs, sub_kwargs, tracer_provider=provider).completion("root context", "go")
    assert res.status == "final" and res.response == "['3', '4']"
    spans = list(exporter.get_finished_spans())
    (top,) = [s for s in spans if s.parent is None]
    assert top.name == "invoke_agent rlm"
    assert _shape(spans, top) == EXPECTED
    attrs = dict(top.attributes or {})
    assert attrs["gen_ai.operation.name"] == "invoke_agent"
    assert attrs["rlm.status"] == "final" and attrs["rlm.iterations"] == 3
    assert attrs["rlm.usage.input_tokens"] == res.usage.total.input_tokens
    # Every model call is one chat span with the GenAI attributes; tokens add up exactly.
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert len(chats) == sum(1 for r in scripted.stats.log if r.model)
    tokens: Counter[str] = Counter()
    for s in chats:
        a = dict(s.attributes or {})
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.request.model"] == a["gen_ai.response.model"]
        assert a["gen_ai.response.finish_reasons"] == ("stop",)
        tokens[str(a["gen_ai.response.model"])] += int(a["gen_ai.usage.input_tokens"]) + int(
            a["gen_ai.usage.output_tokens"]
        )
    served: Counter[str] = Counter()
    for r in scripted.stats.log:
        served[r.model] += r.prompt_tokens + r.completion_tokens
    assert tokens == served
    # RLM attributes: depth on every span, the failing cell marked as an error.
    depths = Counter(int((s.attributes or {})["rlm.depth"]) for s in spans)
    # depth 0: completion, 3 iterations, 3 root calls, 2 cells; depth 1: the sub-call, the
    # 2 child RLMs and each child's iteration, root call and cell.
    assert depths == {0: 9, 1: 9}
    cells = [s for s in spans if s.name == "execute_tool repl"]
    failed = [s for s in cells if s.status.status_code == StatusCode.ERROR]
    assert len(failed) == 1 and "ZeroDivisionError" in (failed[0].status.description or "")
    assert "sk-abcdefghijklmnopqrstuv" not in (failed[0].status.description or "")
    # No content unless asked for (the GenAI conventions' default).
    assert not any("rlm.prompt" in (s.attributes or {}) for s in spans)


def test_content_is_captured_only_on_request_and_redacted(
    scripted: ScriptedServer,
    openai_kwargs: dict[str, Any],
    sub_kwargs: dict[str, Any],
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    _rlm(openai_kwargs, sub_kwargs, tracer_provider=provider).completion("root context", "go")
    spans = list(exporter.get_finished_spans())
    codes = [
        str((s.attributes or {}).get("rlm.code")) for s in spans if s.name.startswith("execute")
    ]
    assert any("rlm_query_batched" in c for c in codes)
    text = repr([dict(s.attributes or {}) for s in spans])
    assert "sk-abcdefghijklmnopqrstuv" not in text and "[REDACTED]" in text
    prompts = [(s.attributes or {}).get("rlm.prompt") for s in spans if s.name.startswith("chat")]
    assert all(prompts)


def test_standard_env_vars_turn_spans_on(
    scripted: ScriptedServer,
    openai_kwargs: dict[str, Any],
    sub_kwargs: dict[str, Any],
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert rlm_otel.span_handler() is None  # off by default: no spans, no cost
    monkeypatch.setattr(rlm_otel, "_made_provider", provider)
    assert RunResources(_rlm(openai_kwargs, sub_kwargs).config).spans is None
    # The provider the variables would make (an OTLP exporter here) stands in as ours.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    _rlm(openai_kwargs, sub_kwargs).completion("root context", "go")
    names = Counter(s.name for s in exporter.get_finished_spans())
    assert names["invoke_agent rlm"] == 3 and names["rlm.iteration 3"] == 1
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert rlm_otel.span_handler() is None
