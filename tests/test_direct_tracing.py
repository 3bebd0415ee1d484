"""A direct run (``mode="direct"|"auto"``) is visible where a loop's run is: one chat span
under its completion span (OpenTelemetry), one ``llm`` run under the chat model's run
(LangChain ``collect_runs``), and a trace file with a metadata and a result line.

Against the scripted server on both wires; the direct prompt is answered by the rule
``teach_direct`` teaches the scripted model (tests/support/mode_support.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tracers.context import collect_runs
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rlm_engine import RLM, RLMLogger
from rlm_engine.scripted import ScriptedModel, ScriptedServer
from rlm_integrations.langchain import RLMChatModel
from tests.support.mode_support import (
    BACKENDS,
    QUESTION,
    haystack,
    server_tokens,
    teach_direct,
    wire_options,
)


def _spans(**options: Any) -> tuple[InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, provider


@pytest.mark.parametrize("backend", BACKENDS)
def test_direct_run_is_one_chat_span_under_its_completion(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel, backend: str
) -> None:
    teach_direct(scripted_model)
    exporter, provider = _spans()
    rlm = RLM(**wire_options(scripted_server, backend), mode="auto", tracer_provider=provider)
    res = rlm.completion(haystack("5150"), QUESTION)
    assert (res.path, res.response) == ("direct", "5150")
    chat, run = exporter.get_finished_spans()
    assert (chat.name, run.name) == ("chat scripted-root", "invoke_agent rlm")
    assert chat.parent is not None and chat.parent.span_id == run.context.span_id
    assert chat.attributes is not None and chat.status.is_ok
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.request.model"] == "scripted-root"
    tokens = (
        chat.attributes["gen_ai.usage.input_tokens"] + chat.attributes["gen_ai.usage.output_tokens"]
    )
    assert tokens == server_tokens(scripted_server) > 0
    assert chat.attributes["gen_ai.response.finish_reasons"] == ("stop",)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fallback_ends_the_direct_run_and_the_loop_runs_as_its_own(
    scripted_model: ScriptedModel, backend: str
) -> None:
    teach_direct(scripted_model)
    exporter, provider = _spans()
    with ScriptedServer(scripted_model, context_window=4_000) as scripted_server:
        rlm = RLM(
            **wire_options(scripted_server, backend),
            environment="local",
            mode="auto",
            direct_threshold_tokens=100_000,
            root_context_window=8_000,
            backend_kwargs={"context_chars": 8_000},
            tracer_provider=provider,
        )
        res = rlm.completion(haystack("6061", lines=700), QUESTION)
    assert res.path == "rlm" and res.response == "6061"
    spans = exporter.get_finished_spans()
    runs = [s for s in spans if s.name == "invoke_agent rlm" and s.parent is None]
    assert len(runs) == 2
    direct_run = runs[0]
    assert not direct_run.status.is_ok
    assert "refused the direct prompt" in (direct_run.status.description or "")
    (refused_call,) = [
        s for s in spans if s.parent is not None and s.parent.span_id == direct_run.context.span_id
    ]
    assert refused_call.name == "chat scripted-root" and not refused_call.status.is_ok
    assert runs[1].status.is_ok  # the loop's run answered


@pytest.mark.parametrize("backend", BACKENDS)
def test_direct_trace_file_has_metadata_and_result(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel, backend: str, tmp_path: Path
) -> None:
    teach_direct(scripted_model)
    logger = RLMLogger(tmp_path)
    res = RLM(**wire_options(scripted_server, backend), mode="direct", logger=logger).completion(
        haystack("7007"), QUESTION
    )
    assert res.response == "7007"
    (path,) = tmp_path.glob("rlm_*.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["type"] for r in lines] == ["metadata", "result"]
    meta = lines[0]
    assert meta["run_id"] == res.run_id == lines[1]["run_id"]
    assert (meta["path"], meta["query"]) == ("direct", QUESTION)
    assert meta["path_reason"] == res.path_reason
    assert meta["config"]["root_model"] == "scripted-root"
    assert meta["config"]["mode"] == "direct"
    assert meta["system_prompt"].startswith("You")  # the direct call's system message
    assert lines[1]["status"] == "final"


@pytest.mark.parametrize("backend", BACKENDS)
def test_direct_call_is_one_llm_run_carrying_its_usage(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel, backend: str
) -> None:
    teach_direct(scripted_model)
    opts = wire_options(scripted_server, backend)
    opts.pop("max_retries")
    llm = RLMChatModel(**opts, environment="local", mode="auto")
    with collect_runs() as cb:
        msg = llm.invoke(QUESTION, context=haystack("2718"))
    assert msg.content == "2718" and msg.response_metadata["path"] == "direct"
    (top,) = cb.traced_runs
    assert top.run_type == "llm" and top.name == "RLMChatModel"
    (call,) = top.child_runs
    assert (call.run_type, call.name, call.error) == ("llm", "direct:scripted-root", None)
    assert call.child_runs == []
    assert "Request: What is the secret code?" in call.inputs["prompts"][0]
    message = call.outputs["generations"][0][0]["message"]["kwargs"]
    assert message["content"] == "2718"
    usage = message["usage_metadata"]
    # Usage appears once: on the call's run, so the RLM's own message carries none of it.
    assert usage["total_tokens"] == server_tokens(scripted_server) > 0
    assert msg.usage_metadata is not None and msg.usage_metadata["total_tokens"] == 0
