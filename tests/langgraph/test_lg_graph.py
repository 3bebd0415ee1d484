"""The RLM graph: loop shape, answers, usage, limits, async concurrency, thread reuse."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from lg_support import ANSWER, QUESTION

from rlm_engine import RLM
from rlm_engine.scripted import Reply
from rlm_integrations.langgraph import NODES, REGISTRY, build_rlm_graph, recursion_limit_for
from rlm_integrations.langgraph.state import RLMGraphState


def test_compiled_graph_is_the_engine_loop(graph_kwargs):
    app = build_rlm_graph(**graph_kwargs).compile()
    g = app.get_graph()
    assert set(g.nodes) == {"__start__", "__end__", *NODES}
    edges = {(e.source, e.target, e.conditional) for e in g.edges}
    assert edges == {
        ("__start__", "generate", False),
        ("generate", "execute", True),
        ("generate", "check_final", True),
        ("execute", "check_final", False),
        ("check_final", "generate", True),
        ("check_final", "__end__", True),
    }
    mermaid = app.get_graph().draw_mermaid()
    for line in (
        "__start__ --> generate;",
        "generate -.-> execute;",
        "generate -.-> check_final;",
        "execute --> check_final;",
        "check_final -.-> generate;",
        "check_final -.-> __end__;",
    ):
        assert line in mermaid


def test_recursion_limit_follows_max_iterations(graph_kwargs):
    app = build_rlm_graph(**{**graph_kwargs, "max_iterations": 40}).compile()
    assert app.config["recursion_limit"] == recursion_limit_for(40) >= 3 * 40


def test_state_schema_is_typed_and_documented():
    """Every state key has a type and a ``#:`` doc comment."""
    lines = [ln.strip() for ln in inspect.getsource(RLMGraphState).splitlines()]
    documented = {
        nxt.split(":")[0]
        for ln, nxt in zip(lines, lines[1:], strict=False)
        if ln.startswith("#:") and not nxt.startswith("#:")
    }
    keys = set(RLMGraphState.__annotations__)
    assert {"context", "query", "iteration", "history", "final_answer", "status", "usage"} <= keys
    assert documented == keys


def test_invoke_answers_like_rlm_completion(graph_kwargs, haystack, scripted_server):
    engine = RLM(
        backend=graph_kwargs["backend"],
        backend_kwargs=graph_kwargs["backend_kwargs"],
        sub_backend=graph_kwargs["sub_backend"],
        sub_backend_kwargs=graph_kwargs["sub_backend_kwargs"],
    ).completion(haystack, QUESTION)
    engine_requests = scripted_server.stats.requests
    scripted_server.reset_stats()

    out = build_rlm_graph(**graph_kwargs).compile().invoke({"context": haystack, "query": QUESTION})

    assert out["status"] == engine.status == "final"
    assert out["final_answer"] == engine.response == ANSWER
    assert out["iteration"] == len(engine.iterations) == len(out["history"])
    assert scripted_server.stats.requests == engine_requests
    first = out["history"][0]
    assert first["index"] == 1 and "llm_query_batched" in first["code_blocks"][0]["code"]
    assert first["feedback"].startswith("REPL output:")
    # usage in state equals what the server counted
    prompt, completion = scripted_server.stats.tokens()
    assert out["usage"]["total"]["input_tokens"] == prompt
    assert out["usage"]["total"]["output_tokens"] == completion
    assert out["usage"]["root"]["calls"] == out["iteration"]
    assert out["usage"]["sub"]["calls"] == scripted_server.stats.by_model["scripted-sub"]
    assert "context" not in out  # the output schema never echoes the 700 KB input
    assert out["run_id"] not in REGISTRY  # the finished run closed its REPL


async def test_ainvoke_runs_batched_subcalls_concurrently(graph_kwargs, haystack, scripted_server):
    scripted_server.set_latency(0.2, model="scripted-sub")
    app = build_rlm_graph(**graph_kwargs).compile(checkpointer=InMemorySaver())
    out = await app.ainvoke(
        {"context": haystack, "query": QUESTION}, {"configurable": {"thread_id": "async"}}
    )
    assert out["final_answer"] == ANSWER
    assert scripted_server.stats.max_in_flight_by_model["scripted-sub"] > 1


async def test_astream_and_invoke_share_live_sessions_across_event_loops(
    graph_kwargs, haystack, scripted_server
):
    """A run paused under ``invoke`` continues under ``ainvoke`` (sessions live on one loop)."""
    app = build_rlm_graph(**graph_kwargs).compile(
        checkpointer=InMemorySaver(), interrupt_before=["execute"]
    )
    cfg = {"configurable": {"thread_id": "loops"}}
    await asyncio.to_thread(app.invoke, {"context": haystack, "query": QUESTION}, cfg)
    assert app.get_state(cfg).next == ("execute",)
    rebuilds = REGISTRY.rebuilds
    seen = []
    while app.get_state(cfg).next:
        async for update in app.astream(None, cfg, stream_mode="updates"):
            seen.extend(update)
    assert app.get_state(cfg).values["final_answer"] == ANSWER
    assert REGISTRY.rebuilds == rebuilds  # the live REPL was reused, not rebuilt
    assert seen[:2] == ["execute", "check_final"]


def test_max_iterations_ends_with_a_partial_answer(graph_kwargs, scripted_model, haystack):
    scripted_model.add_rule(
        lambda r: r.is_rlm_root and "run out of iterations" not in r.last_user,
        Reply(
            "Looking around.\n```repl\nanswer = 'partial ' + str(len(context))\nprint(answer)\n```"
        ),
    )
    scripted_model.add_rule(lambda r: r.is_rlm_root, "FINAL(best guess)")
    out = (
        build_rlm_graph(**{**graph_kwargs, "max_iterations": 2})
        .compile()
        .invoke({"context": haystack, "query": QUESTION})
    )
    assert out["status"] == "max_iterations"
    assert out["iteration"] == 2
    assert out["final_answer"] is None
    assert out["partial_answer"] == "best guess"


def test_llm_call_budget_maps_to_engine_budget(graph_kwargs, haystack, scripted_server):
    out = (
        build_rlm_graph(**{**graph_kwargs, "max_llm_calls": 5})
        .compile()
        .invoke({"context": haystack, "query": QUESTION})
    )
    assert out["status"] == "budget"
    assert "max_llm_calls=5" in out["error"]
    assert scripted_server.stats.requests <= 5
    assert out["usage"]["total"]["calls"] <= 5


def test_a_new_input_on_a_finished_thread_starts_a_new_run(graph_kwargs, haystack):
    app = build_rlm_graph(**graph_kwargs).compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "reuse"}}
    first = app.invoke({"context": haystack, "query": QUESTION}, cfg)
    other = haystack.replace(f"secret code is {ANSWER}", "secret code is 9000")
    second = app.invoke({"context": other, "query": QUESTION}, cfg)
    assert (first["final_answer"], second["final_answer"]) == (ANSWER, "9000")
    assert second["run_id"] != first["run_id"]
    assert [h["index"] for h in second["history"]] == list(range(1, second["iteration"] + 1))
    assert second["usage"]["total"]["calls"] == first["usage"]["total"]["calls"]


def test_missing_context_is_an_actionable_error(graph_kwargs):
    with pytest.raises(ValueError, match="needs a context"):
        build_rlm_graph(**graph_kwargs).compile().invoke({"query": QUESTION})
