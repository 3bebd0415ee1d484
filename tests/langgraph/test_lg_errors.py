"""Root LM failures: RetryPolicy on ``generate``, raise-and-resume, or end with a status."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import RetryPolicy
from lg_support import ANSWER, QUESTION

from rlm_engine.scripted import Fault
from rlm_integrations.langgraph import REGISTRY, RootLMCallError, build_rlm_graph

FAST_RETRY = RetryPolicy(
    max_attempts=2, initial_interval=0.01, jitter=False, retry_on=RootLMCallError
)


@pytest.fixture
def no_sdk_retries(graph_kwargs: dict) -> dict:
    """The SDK's own retries off, so each failed generate attempt is one HTTP request."""
    return {
        **graph_kwargs,
        "backend_kwargs": {**graph_kwargs["backend_kwargs"], "max_retries": 0},
        "retry_policy": FAST_RETRY,
    }


def _root_turn(turn: int):
    return lambda req: req.is_rlm_root and req.turn == turn


def test_retry_policy_retries_a_transient_root_failure(no_sdk_retries, haystack, scripted_server):
    scripted_server.inject(Fault(status=503, times=1, match=_root_turn(0)))
    open_sessions = len(REGISTRY)
    app = build_rlm_graph(**no_sdk_retries).compile()
    out = app.invoke({"context": haystack, "query": QUESTION})
    # The failed first attempt's REPL was closed; the finished run's stays for a follow-up.
    assert len(REGISTRY) == open_sessions + 1
    assert out["status"] == "final" and out["final_answer"] == ANSWER
    failed = [r for r in scripted_server.stats.log if r.status == 503]
    assert len(failed) == 1
    assert out["usage"]["root"]["calls"] == out["iteration"]  # the failed call cost nothing


def test_outage_raises_after_retries_and_the_thread_resumes(
    no_sdk_retries, haystack, scripted_server
):
    app = build_rlm_graph(**no_sdk_retries).compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "outage"}}
    fault = scripted_server.inject(Fault(status=500, times=None, match=_root_turn(1)))
    with pytest.raises(RootLMCallError, match="Root LM call failed"):
        app.invoke({"context": haystack, "query": QUESTION}, cfg)
    assert fault.fired == FAST_RETRY.max_attempts
    snap = app.get_state(cfg)
    assert snap.next == ("generate",) and snap.values["iteration"] == 1
    subs_before = scripted_server.stats.by_model["scripted-sub"]

    scripted_server.clear_faults()
    out = app.invoke(None, cfg)
    assert out["final_answer"] == ANSWER
    # iteration 1's chunk queries were not asked again: only the aggregate call is new
    assert scripted_server.stats.by_model["scripted-sub"] == subs_before + 1
    assert out["run_id"] not in REGISTRY


def test_on_error_status_ends_the_run_like_rlm_completion(
    no_sdk_retries, haystack, scripted_server
):
    scripted_server.inject(Fault(status=500, times=None, match=_root_turn(0)))
    out = (
        build_rlm_graph(**no_sdk_retries, on_error="status")
        .compile()
        .invoke({"context": haystack, "query": QUESTION})
    )
    assert out["status"] == "error"
    assert "Root LM call failed" in out["error"] and "500" in out["error"]
    assert out["final_answer"] is None and out["iteration"] == 0
    assert len([r for r in scripted_server.stats.log if r.status == 500]) == 2


def test_timeout_maps_to_the_engine_budget(graph_kwargs, haystack, scripted_server):
    scripted_server.set_latency(5.0, model="scripted-root")
    out = (
        build_rlm_graph(**graph_kwargs, run_timeout=0.5)
        .compile()
        .invoke({"context": haystack, "query": QUESTION})
    )
    assert out["status"] == "timeout"
    assert "timeout" in out["error"]


def test_bad_on_error_value():
    with pytest.raises(ValueError, match="on_error"):
        build_rlm_graph(on_error="ignore")  # type: ignore[arg-type]
