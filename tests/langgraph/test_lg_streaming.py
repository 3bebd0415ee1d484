"""Streaming: node steps (``updates``) and engine progress events (``custom``)."""

from __future__ import annotations

from lg_support import ANSWER, QUESTION

from rlm_integrations.langgraph import build_rlm_graph


def test_updates_stream_shows_each_node_step(graph_kwargs, haystack):
    app = build_rlm_graph(**graph_kwargs).compile()
    steps = [
        node
        for update in app.stream({"context": haystack, "query": QUESTION}, stream_mode="updates")
        for node in update
    ]
    assert steps == ["generate", "execute", "check_final"] * 2


def test_custom_stream_carries_engine_progress_events(graph_kwargs, haystack, scripted_server):
    app = build_rlm_graph(**graph_kwargs).compile()
    chunks = list(
        app.stream({"context": haystack, "query": QUESTION}, stream_mode=["updates", "custom"])
    )
    events = [data for mode, data in chunks if mode == "custom"]
    kinds = [e["event"] for e in events]
    assert kinds[:3] == ["iteration_start", "root_response", "code_start"]
    assert kinds[-1] == "final" and events[-1]["response"] == ANSWER
    assert all("usage" in e and "depth" in e for e in events)
    code_ends = [e for e in events if e["event"] == "code_end"]
    sub_requests = scripted_server.stats.by_model["scripted-sub"]
    assert sum(e["subcalls"] for e in code_ends) == sub_requests
    assert kinds.count("subcall_end") == sub_requests
    assert events[-1]["usage"]["calls"] == scripted_server.stats.requests
    # progress of an iteration arrives before that iteration's "execute" update
    order = [data["event"] if mode == "custom" else next(iter(data)) for mode, data in chunks]
    first_execute = order.index("execute")
    assert order.index("code_end") < first_execute
    assert order.index("iteration_end") < first_execute


def test_on_event_handler_gets_the_same_events(graph_kwargs, haystack):
    seen: list[dict] = []
    app = build_rlm_graph(**graph_kwargs, on_event=seen.append).compile()
    streamed = [
        e for e in app.stream({"context": haystack, "query": QUESTION}, stream_mode="custom")
    ]
    assert [e["event"] for e in seen] == [e["event"] for e in streamed]
