"""Live-session rebuilds in one process: time travel and forks of a checkpointed thread."""

from __future__ import annotations

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from lg_support import ANSWER, QUESTION

from rlm_integrations.langgraph import REGISTRY, build_rlm_graph


def _checkpoint(app, cfg, *, iteration: int, next_node: str):
    for snap in app.get_state_history(cfg):
        if snap.next == (next_node,) and snap.values.get("iteration") == iteration:
            return snap.config
    raise AssertionError(f"no checkpoint with iteration={iteration} before {next_node}")


def test_resuming_an_old_checkpoint_replays_its_recorded_subcalls(
    graph_kwargs, haystack, scripted_server
):
    app = build_rlm_graph(**graph_kwargs).compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "travel"}}
    first = app.invoke({"context": haystack, "query": QUESTION}, cfg)
    assert first["run_id"] not in REGISTRY  # finished: its REPL is gone
    subs = scripted_server.stats.by_model["scripted-sub"]
    rebuilds = REGISTRY.rebuilds

    older = _checkpoint(app, cfg, iteration=1, next_node="generate")
    again = app.invoke(None, older)  # a fork that re-does iteration 2 only
    assert again["final_answer"] == ANSWER
    assert REGISTRY.rebuilds == rebuilds + 1
    # iteration 1's chunk queries came from the trajectory; only the aggregate is new
    assert scripted_server.stats.by_model["scripted-sub"] == subs + 1


def test_a_live_session_ahead_of_the_checkpoint_is_rebuilt(graph_kwargs, haystack, scripted_server):
    app = build_rlm_graph(**graph_kwargs).compile(
        checkpointer=InMemorySaver(), interrupt_before=["execute"]
    )
    cfg = {"configurable": {"thread_id": "fork"}}
    app.invoke({"context": haystack, "query": QUESTION}, cfg)
    app.invoke(Command(resume=True), cfg)  # iteration 1 ran; paused before iteration 2
    assert app.get_state(cfg).values["iteration"] == 1
    rebuilds = REGISTRY.rebuilds

    # Branch from the pause before iteration 1: the live REPL has already run that cell.
    before = _checkpoint(app, cfg, iteration=0, next_node="execute")
    fork = app.invoke(None, before)
    assert fork.get("iteration") == 1 and app.get_state(cfg).next == ("execute",)
    assert REGISTRY.rebuilds == rebuilds + 1
    while app.get_state(cfg).next:
        out = app.invoke(Command(resume=True), cfg)
    assert out["final_answer"] == ANSWER
