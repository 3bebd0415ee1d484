"""``build_rlm_graph(mode=...)``: a ``route`` node before ``generate`` answers with one
direct LM call or hands over to the loop; the output says which path ran and why (on the
OpenAI and the Anthropic wire)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from rlm_engine import RLMLogger
from rlm_engine.scripted import ScriptedModel, ScriptedServer
from rlm_integrations.langgraph import build_rlm_graph
from tests.support.mode_support import (
    BACKENDS,
    QUESTION,
    completions,
    haystack,
    refused,
    server_tokens,
    teach_direct,
    wire_options,
)


def app_for(scripted_server: ScriptedServer, backend: str, **options: Any) -> Any:
    graph = build_rlm_graph(
        **wire_options(scripted_server, backend), environment="local", **options
    )
    return graph.compile(checkpointer=InMemorySaver())


def test_default_graph_has_no_route_node() -> None:
    assert "route" not in build_rlm_graph(backend="scripted").nodes
    assert "route" in build_rlm_graph(backend="scripted", mode="auto").nodes


@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_small_context_ends_after_one_direct_call(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel, backend: str
) -> None:
    seen = teach_direct(scripted_model)
    app = app_for(scripted_server, backend, mode="auto")
    cfg = {"configurable": {"thread_id": "t1"}}
    events = [
        chunk
        for mode, chunk in app.stream(
            {"context": haystack("1618"), "query": QUESTION}, cfg, stream_mode=["custom", "values"]
        )
        if mode == "custom"
    ]
    out = app.get_state(cfg).values
    assert out["final_answer"] == "1618" and out["status"] == "final"
    assert out["path"] == "direct" and "fit under" in out["path_reason"]
    assert out["history"] == [] and out["usage"]["total"]["calls"] == 1
    assert len(seen) == 1 and len(completions(scripted_server)) == 1
    assert out["usage"]["total"]["total_tokens"] == server_tokens(scripted_server)
    assert [e["path"] for e in events if e["event"] == "route"] == ["direct"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_big_context_runs_the_loop(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel, backend: str, tmp_path: Path
) -> None:
    seen = teach_direct(scripted_model)
    logger = RLMLogger(tmp_path)
    app = app_for(scripted_server, backend, mode="auto", direct_threshold_tokens=200, logger=logger)
    cfg = {"configurable": {"thread_id": "t2"}}
    out = app.invoke({"context": haystack("1618"), "query": QUESTION}, cfg)
    assert out["final_answer"] == "1618" and seen == []
    assert out["path"] == "rlm" and "exceed 200" in out["path_reason"]
    result = json.loads(logger.last_path.read_text().splitlines()[-1])
    assert result["type"] == "result" and result["path_reason"] == out["path_reason"]
    assert len(out["history"]) >= 1
    # The next input on the thread is routed again: a small one goes direct, and the
    # output is that run's (no history of the earlier run).
    out2 = app.invoke({"context": haystack("99", lines=2), "query": QUESTION}, cfg)
    assert out2["path"] == "direct" and out2["final_answer"] == "99"
    assert out2["history"] == [] and out2["run_id"] != out["run_id"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_context_length_error_routes_to_the_loop(
    scripted_model: ScriptedModel, backend: str
) -> None:
    seen = teach_direct(scripted_model)
    with ScriptedServer(scripted_model, context_window=4_000) as scripted_server:
        app = app_for(
            scripted_server,
            backend,
            mode="auto",
            direct_threshold_tokens=100_000,
            root_context_window=8_000,
            backend_kwargs={"context_chars": 8_000},
        )
        out = app.invoke(
            {"context": haystack("6061", lines=700), "query": QUESTION},
            {"configurable": {"thread_id": "t3"}},
        )
        assert out["final_answer"] == "6061" and out["path"] == "rlm"
        assert "refused the direct prompt" in out["path_reason"]
        assert len(refused(scripted_server)) == 1 and seen == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_rlm_node_says_which_path_answered(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel, backend: str
) -> None:
    from langchain_core.messages import HumanMessage
    from langgraph.graph import START, MessagesState, StateGraph

    from rlm_integrations.langgraph import RLMNode

    class State(MessagesState):
        document: str

    seen = teach_direct(scripted_model)
    node = RLMNode(
        context_key="document",
        **wire_options(scripted_server, backend),
        environment="local",
        mode="auto",
    )
    g = StateGraph(State)
    g.add_node("rlm", node)
    g.add_edge(START, "rlm")
    out = g.compile().invoke({"messages": [HumanMessage(QUESTION)], "document": haystack("1618")})
    msg = out["messages"][-1]
    assert msg.content == "1618" and len(seen) == 1 and len(completions(scripted_server)) == 1
    meta = msg.response_metadata
    assert meta["rlm_path"] == "direct" and "fit under" in meta["rlm_path_reason"]
    assert msg.usage_metadata["total_tokens"] == 0  # the direct llm run under route carried it
