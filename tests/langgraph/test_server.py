"""The RLM graphs on the real LangGraph Server (``langgraph dev``, in-memory runtime),
driven over HTTP with ``langgraph_sdk``; the scripted model answers over HTTP too.

One server serves the module (started from ``langgraph.json`` in a temp dir, stopped by
the fixture); the server is configured the way an operator would: ``RLM_*`` variables.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient
from lg_server import LangGraphDev, server_env, subs
from lg_support import ANSWER, QUESTION, make_haystack

from rlm_engine.scripted import ScriptedModel, ScriptedServer

DOC = "\n".join(f"line {i}: the value is {i * 3}" for i in range(60))
TURN_1 = (
    "```repl\nparts = [context[i:i + 400] for i in range(0, len(context), 400)]\n"
    "notes = llm_query_batched([f'Summarize: {p}' for p in parts])\n"
    "count = str(len(notes))\n```"
)


def script(model: ScriptedModel) -> None:
    """A two-turn conversation whose follow-up needs the first turn's REPL variable."""
    model.add_rule(
        lambda r: r.is_rlm_root and "How many parts" in r.first_user,
        [TURN_1, "FINAL_VAR(count)"],
    )
    model.add_rule(
        lambda r: r.is_rlm_root and "first note" in r.first_user,
        ["```repl\nfirst = notes[0][:12]\n```", "FINAL_VAR(first)"],
    )


@pytest.fixture(scope="module")
def lm() -> Iterator[ScriptedServer]:
    model = ScriptedModel()
    script(model)
    server = ScriptedServer(model)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("contexts")


@pytest.fixture(scope="module")
def served(
    lm: ScriptedServer, contexts: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LangGraphDev]:
    dev = LangGraphDev(tmp_path_factory.mktemp("lgserver"), server_env(lm, contexts))
    dev.start()
    try:
        yield dev
    finally:
        dev.stop()


@pytest.fixture
def client(served: LangGraphDev, lm: ScriptedServer) -> SyncLangGraphClient:
    lm.reset_stats()
    return get_sync_client(url=served.url, timeout=120)


@pytest.fixture(scope="module")
def haystack() -> str:
    return make_haystack(5_000)  # 285 KB: 6 chunk sub-calls and an aggregate


def _stream(client: SyncLangGraphClient, thread: str, graph: str, **kw: Any) -> list[Any]:
    parts = list(client.runs.stream(thread, graph, stream_mode=["updates", "custom"], **kw))
    errors = [p.data for p in parts if p.event == "error"]
    assert not errors, errors
    return parts


# -- the RLM graph over the API -----------------------------------------------------------
def test_run_streams_updates_and_events_then_state_and_history(
    client: SyncLangGraphClient, lm: ScriptedServer, haystack: str
) -> None:
    thread = client.threads.create()["thread_id"]
    parts = _stream(client, thread, "rlm", input={"context": haystack, "query": QUESTION})

    updates = [p.data for p in parts if p.event == "updates"]
    nodes = [next(iter(u)) for u in updates]
    assert nodes == ["generate", "execute", "check_final"] * 2
    final = updates[-1]["check_final"]
    assert final["status"] == "final" and final["final_answer"] == ANSWER
    events = [p.data["event"] for p in parts if p.event == "custom"]
    assert events[0] == "iteration_start" and events[-1] == "final"
    paid = subs(lm)
    assert events.count("subcall_end") == paid == 7  # 6 chunks + 1 aggregate
    assert "session_rebuilt" not in events

    state = client.threads.get_state(thread)
    values = state["values"]
    assert values["final_answer"] == ANSWER and values["status"] == "final"
    assert values["iteration"] == 2 and len(values["history"]) == 2
    assert values["usage"]["sub"]["calls"] == paid
    assert state["next"] == []
    history = client.threads.get_history(thread, limit=50)
    # newest first: the input (-1), its application (0), then one per node step
    assert [h["metadata"]["step"] for h in reversed(history)] == list(range(-1, 7))
    assert history[-1]["next"] == ["__start__"] and history[-2]["next"] == ["generate"]


def test_a_follow_up_on_the_thread_uses_the_same_repl(
    client: SyncLangGraphClient, lm: ScriptedServer
) -> None:
    thread = client.threads.create()["thread_id"]
    one = client.runs.wait(thread, "rlm", input={"context": DOC, "query": "How many parts?"})
    assert one["status"] == "final" and one["final_answer"] == str(len(DOC) // 400 + 1)
    paid = subs(lm)
    assert paid > 0
    two = client.runs.wait(thread, "rlm", input={"query": "What does the first note say?"})
    assert two["status"] == "final" and two["final_answer"]
    assert subs(lm) == paid  # `notes` came from the first run's REPL
    values = client.threads.get_state(thread)["values"]
    assert [t["query"] for t in values["turns"]] == [
        "How many parts?",
        "What does the first note say?",
    ]


def test_interrupt_before_execute_then_resume_with_edited_code(
    client: SyncLangGraphClient, lm: ScriptedServer, haystack: str
) -> None:
    thread = client.threads.create()["thread_id"]
    client.runs.wait(
        thread, "rlm", input={"context": haystack, "query": QUESTION}, interrupt_before=["execute"]
    )
    state = client.threads.get_state(thread)
    assert state["next"] == ["execute"]
    assert "llm_query" in state["values"]["pending_response"]  # the code to review
    assert subs(lm) == 0

    edited = "```repl\nreviewed = 'length ' + str(len(context))\n```\nFINAL_VAR(reviewed)"
    client.threads.update_state(thread, {"pending_response": edited})
    out = client.runs.wait(thread, "rlm", input=None)
    assert out["status"] == "final" and out["final_answer"] == f"length {len(haystack)}"
    assert out["history"][0]["response"] == edited  # what ran is what the history shows
    assert subs(lm) == 0  # the reviewed-away code's sub-calls never ran


def test_configurable_sets_limits_within_the_servers(
    client: SyncLangGraphClient, lm: ScriptedServer, haystack: str
) -> None:
    thread = client.threads.create()["thread_id"]
    out = client.runs.wait(
        thread,
        "rlm",
        input={"context": haystack, "query": QUESTION},
        config={"configurable": {"max_iterations": 1}},
    )
    assert out["status"] == "max_iterations" and out["iteration"] == 1
    # the same through the run's context (LangGraph's newer spelling of run options: the
    # server mirrors it into configurable, so the same rules apply)
    thread = client.threads.create()["thread_id"]
    out = client.runs.wait(
        thread,
        "rlm",
        input={"context": haystack, "query": QUESTION},
        context={"max_iterations": 1},
    )
    assert out["status"] == "max_iterations" and out["iteration"] == 1

    # a caller may not point the server's key at another model server, nor lift a budget
    for asked, says in (
        ({"base_url": "http://127.0.0.1:9/v1"}, "RLM_SERVER_CONFIGURABLE=base_url"),
        ({"max_cost": None}, "may lower a limit, not raise or remove it"),
        ({"api_key": "sk-other"}, "stored in every checkpoint's metadata"),
    ):
        lm.reset_stats()
        thread = client.threads.create()["thread_id"]
        parts = list(
            client.runs.stream(
                thread,
                "rlm",
                input={"context": "x", "query": "q"},
                config={"configurable": asked},
            )
        )
        errors = [p.data for p in parts if p.event == "error"]
        assert errors and says in errors[0]["message"], parts
        assert lm.stats.log == []


# -- context by reference ---------------------------------------------------------------------
def _sizes(client: SyncLangGraphClient, thread: str) -> list[int]:
    """The size of the thread's state at each checkpoint, as the API returns it."""
    states = client.threads.get_history(thread, limit=50)
    return [len(json.dumps(s["values"])) for s in states]


def test_context_from_the_store_stays_out_of_every_checkpoint(
    client: SyncLangGraphClient, lm: ScriptedServer, haystack: str
) -> None:
    client.store.put_item(["docs"], "haystack", {"context": haystack})
    ref = {"store": {"namespace": ["docs"], "key": "haystack"}}
    thread = client.threads.create()["thread_id"]
    out = client.runs.wait(thread, "rlm", input={"context_ref": ref, "query": QUESTION})
    assert out["status"] == "final" and out["final_answer"] == ANSWER
    assert subs(lm) == 7
    sizes = _sizes(client, thread)
    assert len(sizes) == 8
    # the context is never in the state; the largest is the history (sub-call prompts)
    assert max(sizes) < len(haystack) / 5, sizes
    states = client.threads.get_history(thread, limit=50)
    assert all("context" not in s["values"] for s in states)

    # the same context inline: the state the API returns carries it in every checkpoint
    inline = client.threads.create()["thread_id"]
    client.runs.wait(inline, "rlm", input={"context": haystack, "query": QUESTION})
    assert all(size > len(haystack) for size in _sizes(client, inline)[:-1])  # not the input


def test_context_from_a_file_only_under_the_servers_context_dirs(
    client: SyncLangGraphClient, lm: ScriptedServer, contexts: Path, haystack: str, tmp_path: Path
) -> None:
    (contexts / "haystack.txt").write_text(haystack)
    thread = client.threads.create()["thread_id"]
    ref = {"path": str(contexts / "haystack.txt")}
    out = client.runs.wait(thread, "rlm", input={"context_ref": ref, "query": QUESTION})
    assert out["status"] == "final" and out["final_answer"] == ANSWER

    outside = tmp_path / "secret.txt"
    outside.write_text("do not read me")
    for ref, says in (
        ({"path": str(outside)}, "outside the directories this server reads"),
        ({"path": str(contexts / ".." / outside.name)}, "outside the directories"),
        ({"path": str(contexts / "missing.txt")}, "no such file on the server"),
        ({"url": "http://x"}, "context_ref must be"),
    ):
        lm.reset_stats()
        thread = client.threads.create()["thread_id"]
        parts = list(
            client.runs.stream(thread, "rlm", input={"context_ref": ref, "query": QUESTION})
        )
        errors = [p.data for p in parts if p.event == "error"]
        assert errors and says in errors[0]["message"], parts
        assert lm.stats.log == []


# -- the example agent graph ------------------------------------------------------------------
def test_agent_graph_answers_over_its_context(
    client: SyncLangGraphClient, lm: ScriptedServer, haystack: str
) -> None:
    thread = client.threads.create()["thread_id"]
    out = client.runs.wait(
        thread,
        "rlm_agent",
        input={"messages": [{"role": "user", "content": QUESTION}], "context": haystack},
    )
    answer = out["messages"][-1]
    assert answer["type"] == "ai" and answer["content"] == ANSWER
    assert answer["response_metadata"]["rlm_status"] == "final"
    assert answer["response_metadata"]["rlm_usage"]["sub"]["calls"] == subs(lm) == 7

    client.store.put_item(["docs"], "agent", {"context": haystack})
    by_ref = client.threads.create()["thread_id"]
    ref = {"store": {"namespace": ["docs"], "key": "agent"}}
    out = client.runs.wait(
        by_ref,
        "rlm_agent",
        input={"messages": [{"role": "user", "content": QUESTION}], "context_ref": ref},
    )
    assert out["messages"][-1]["content"] == ANSWER and "context" not in out

    lm.reset_stats()
    bare = client.threads.create()["thread_id"]
    out = client.runs.wait(
        bare, "rlm_agent", input={"messages": [{"role": "user", "content": "hi"}]}
    )
    assert "context" in out["messages"][-1]["content"] and lm.stats.log == []


def test_the_schemas_tell_api_users_what_goes_in_and_out(client: SyncLangGraphClient) -> None:
    by_graph = {a["graph_id"]: a for a in client.assistants.search()}
    assert set(by_graph) == {"rlm", "rlm_agent"}
    rlm = client.assistants.get_schemas(by_graph["rlm"]["assistant_id"])
    assert set(rlm["input_schema"]["properties"]) == {"context", "context_ref", "query"}
    out = set(rlm["output_schema"]["properties"])
    assert {"final_answer", "status", "usage", "history"} <= out and "context" not in out
    assert "pending_response" in rlm["state_schema"]["properties"]
    agent = client.assistants.get_schemas(by_graph["rlm_agent"]["assistant_id"])
    assert {"messages", "context", "context_ref"} <= set(agent["input_schema"]["properties"])


def test_cancelling_a_run_stops_generation_at_the_model_server(
    client: SyncLangGraphClient, lm: ScriptedServer
) -> None:
    lm.token_delay = 0.2  # a slow stream: ~50 events take ~10 s
    try:
        thread = client.threads.create()["thread_id"]
        run_id = ""
        for part in client.runs.stream(
            thread,
            "rlm",
            input={"context": DOC, "query": "How many?"},
            stream_mode="custom",
            on_disconnect="continue",
        ):
            if part.event == "metadata":
                run_id = part.data["run_id"]
            if part.event == "custom" and part.data["event"] == "iteration_start":
                break  # the root call starts now
        time.sleep(1.5)  # it streams: its ~50 events take ~10 s
        client.runs.cancel(thread, run_id, wait=True)
        deadline = time.monotonic() + 10
        while not lm.stats.log:
            assert time.monotonic() < deadline, "the model server still streams"
            time.sleep(0.05)
        (call,) = lm.stats.log
        assert call.abandoned and call.events_sent < 20
        assert client.runs.get(thread, run_id)["status"] == "interrupted"
    finally:
        lm.token_delay = 0.0
