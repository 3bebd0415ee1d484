"""LangGraph Server restarts between two nodes of one thread: the next node runs in a new
server process, rebuilds the REPL by replay, and pays for no recorded sub-call again.

The context comes by reference (a file the server reads), so the server's persisted files
(threads, runs, checkpoints) stay far smaller than the context.
"""

from __future__ import annotations

from pathlib import Path

from langgraph_sdk import get_sync_client
from lg_server import LangGraphDev, roots, server_env, subs
from lg_support import ANSWER, QUESTION, make_haystack

from rlm_engine.scripted import ScriptedServer


def _bytes(workdir: Path) -> int:
    return sum(p.stat().st_size for p in (workdir / ".langgraph_api").rglob("*") if p.is_file())


def test_server_restart_between_nodes_replays_without_paying_again(
    tmp_path: Path, scripted_server: ScriptedServer
) -> None:
    lm = scripted_server
    contexts = tmp_path / "contexts"
    contexts.mkdir()
    haystack = make_haystack(10_000)  # 570 KB
    (contexts / "haystack.txt").write_text(haystack)
    workdir = tmp_path / "server"
    workdir.mkdir()
    env = server_env(lm, contexts)
    ref = {"path": str(contexts / "haystack.txt")}

    dev = LangGraphDev(workdir, env).start()
    try:
        client = get_sync_client(url=dev.url, timeout=120)
        thread = client.threads.create()["thread_id"]
        run = {"interrupt_before": ["execute"]}
        client.runs.wait(thread, "rlm", input={"context_ref": ref, "query": QUESTION}, **run)
        client.runs.wait(thread, "rlm", input=None, **run)  # iteration 1 runs, 2 is generated
        state = client.threads.get_state(thread)
        assert state["next"] == ["execute"] and state["values"]["iteration"] == 1
        paid_subs, paid_roots = subs(lm), roots(lm)
        assert paid_subs >= 10 and paid_roots == 2  # every chunk asked; the aggregate is next
    finally:
        dev.stop()  # a graceful stop: the in-mem server writes its files

    # threads, runs and checkpoints: the history (sub-call prompts' heads and tails), not
    # the context (an inline context is written 3 times: run input, thread, checkpoint)
    persisted = _bytes(workdir)
    assert 0 < persisted < len(haystack) / 5, persisted

    dev = LangGraphDev(workdir, env).start()  # a new process, the same files
    try:
        client = get_sync_client(url=dev.url, timeout=120)
        assert client.threads.get_state(thread)["next"] == ["execute"]
        parts = list(client.runs.stream(thread, "rlm", input=None, stream_mode="custom"))
        assert not [p for p in parts if p.event == "error"], parts
        events = [p.data for p in parts if p.event == "custom"]
        rebuilt = [e for e in events if e["event"] == "session_rebuilt"]
        assert len(rebuilt) == 1 and rebuilt[0]["replayed_cells"] >= 1
        values = client.threads.get_state(thread)["values"]
        assert values["status"] == "final" and values["final_answer"] == ANSWER
        # the replay answered iteration 1's sub-calls from the record: one new (the aggregate)
        assert subs(lm) == paid_subs + 1
        assert roots(lm) == paid_roots  # the root's iteration-2 code was checkpointed
        assert values["usage"]["sub"]["calls"] == paid_subs + 1  # and still counted once
    finally:
        dev.stop()
