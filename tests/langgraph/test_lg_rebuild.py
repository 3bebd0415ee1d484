"""Live-session rebuilds in one process: time travel and forks of a checkpointed thread."""

from __future__ import annotations

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Command
from lg_support import ANSWER, QUESTION

from rlm_integrations.langgraph import REGISTRY, build_rlm_graph
from rlm_integrations.langgraph.runtime import run_async, run_blocking


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


async def test_async_sqlite_saver_resume_after_losing_every_live_session(
    tmp_path, graph_kwargs, haystack, scripted_server
):
    graph = build_rlm_graph(**graph_kwargs)
    cfg = {"configurable": {"thread_id": "async-sqlite"}}
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "cp.sqlite")) as saver:
        app = graph.compile(checkpointer=saver, interrupt_after=["check_final"])
        await app.ainvoke({"context": haystack, "query": QUESTION}, cfg)
        assert (await app.aget_state(cfg)).values["iteration"] == 1
    await run_async(REGISTRY.aclose_all())  # what a process exit does to live REPLs
    subs = scripted_server.stats.by_model["scripted-sub"]

    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "cp.sqlite")) as saver:
        app = graph.compile(checkpointer=saver)
        nodes = [node async for update in app.astream(None, cfg) for node in update]
        out = (await app.aget_state(cfg)).values
    assert nodes == ["generate", "execute", "check_final"]
    assert out["final_answer"] == ANSWER
    assert scripted_server.stats.by_model["scripted-sub"] == subs + 1


def test_rebuild_replays_a_child_rlm_without_running_it_again(
    graph_kwargs, haystack, scripted_model, scripted_server
):
    """``rlm_query`` children (max_depth=2) are answered from the trajectory on rebuild."""
    top = "Use it for sub-tasks"  # only the depth-0 system prompt says this (prompts.py)
    scripted_model.add_rule(
        lambda r: r.is_rlm_root and top in r.system and r.turn == 0,
        "Delegate.\n```repl\nfound = rlm_query('What is the secret code?', context=context)\n"
        "print(found)\n```",
    )
    scripted_model.add_rule(
        lambda r: r.is_rlm_root and top in r.system and r.turn == 1, "FINAL_VAR(found)"
    )
    graph = build_rlm_graph(**{**graph_kwargs, "max_depth": 2})
    app = graph.compile(checkpointer=InMemorySaver(), interrupt_after=["check_final"])
    cfg = {"configurable": {"thread_id": "child"}}
    first = app.invoke({"context": haystack, "query": QUESTION}, cfg)
    child_calls = first["usage"]["by_depth"]["1"]["calls"]
    assert child_calls > 1 and first["iteration"] == 1
    requests = scripted_server.stats.requests
    run_blocking(REGISTRY.aclose_all())  # lose the live REPL

    while app.get_state(cfg).next:
        out = app.invoke(None, cfg)
    assert out["final_answer"] == ANSWER
    assert scripted_server.stats.requests == requests + 1  # only the top root's FINAL turn
    assert out["usage"]["by_depth"]["1"]["calls"] == child_calls
