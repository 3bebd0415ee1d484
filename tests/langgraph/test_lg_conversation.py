"""Follow-up queries on a thread continue its conversation: variables from earlier runs
are in the REPL, also after the live REPL was lost (a new process rebuilds it by replay,
without paying for sub-calls again); a new context starts a new conversation."""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from rlm_engine.scripted import ScriptedModel, ScriptedServer
from rlm_integrations.langgraph import REGISTRY, build_rlm_graph
from rlm_integrations.langgraph.runtime import run_blocking

DOC = "\n".join(f"line {i}: the value is {i * 3}" for i in range(60))
TURN_1 = (
    "```repl\nparts = [context[i:i + 400] for i in range(0, len(context), 400)]\n"
    "notes = llm_query_batched([f'Summarize: {p}' for p in parts])\n"
    "count = str(len(notes))\n```"
)


def script(model: ScriptedModel) -> None:
    model.add_rule(
        lambda r: r.is_rlm_root and "How many parts" in r.first_user,
        [TURN_1, "FINAL_VAR(count)"],
    )
    model.add_rule(
        lambda r: r.is_rlm_root and "first note" in r.first_user,
        ["```repl\nfirst = notes[0][:12]\n```", "FINAL_VAR(first)"],
    )


def subs(server: ScriptedServer) -> int:
    return sum(1 for r in server.stats.log if r.model == "scripted-sub" and r.status == 200)


def graph(graph_kwargs: dict[str, Any]) -> Any:
    return build_rlm_graph(**graph_kwargs).compile(checkpointer=InMemorySaver())


def test_a_follow_up_on_the_thread_uses_earlier_variables(
    graph_kwargs: dict[str, Any], scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    script(scripted_model)
    app = graph(graph_kwargs)
    cfg = {"configurable": {"thread_id": "chat"}}
    one = app.invoke({"context": DOC, "query": "How many parts are there?"}, cfg)
    assert one["status"] == "final" and one["final_answer"] == str(len(DOC) // 400 + 1)
    paid = subs(scripted_server)
    assert paid > 0
    two = app.invoke({"query": "What does the first note start with?"}, cfg)  # no context
    assert two["status"] == "final" and two["final_answer"]
    assert subs(scripted_server) == paid  # `notes` came from the first run
    values = app.get_state(cfg).values
    assert [t["query"] for t in values["turns"]] == [
        "How many parts are there?",
        "What does the first note start with?",
    ]
    assert "notes" in values["turns"][0]["variables"]
    assert values["history"] and len(values["history"]) == 2  # this run's own iterations


def test_a_lost_repl_is_rebuilt_for_the_follow_up_without_paying_again(
    graph_kwargs: dict[str, Any], scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    script(scripted_model)
    app = graph(graph_kwargs)
    cfg = {"configurable": {"thread_id": "restart"}}
    app.invoke({"context": DOC, "query": "How many parts are there?"}, cfg)
    paid = subs(scripted_server)
    run_blocking(REGISTRY.aclose_all())  # what a new process (or another worker) sees
    rebuilds = REGISTRY.rebuilds
    two = app.invoke({"query": "What does the first note start with?"}, cfg)
    assert two["status"] == "final" and two["final_answer"]
    assert REGISTRY.rebuilds == rebuilds + 1
    assert subs(scripted_server) == paid  # replay served the recorded sub-call answers


def test_a_new_context_starts_a_new_conversation(
    graph_kwargs: dict[str, Any], scripted_model: ScriptedModel
) -> None:
    script(scripted_model)
    scripted_model.add_rule(
        lambda r: r.is_rlm_root and "Is notes there" in r.first_user,
        ["```repl\nprint('notes' in globals())\n```", "FINAL(checked)"],
    )
    app = graph(graph_kwargs)
    cfg = {"configurable": {"thread_id": "switch"}}
    app.invoke({"context": DOC, "query": "How many parts are there?"}, cfg)
    out = app.invoke({"context": DOC + "\nmore", "query": "Is notes there?"}, cfg)
    assert out["history"][0]["code_blocks"][0]["stdout"].strip() == "False"
    assert len(app.get_state(cfg).values["turns"]) == 1  # only the new conversation's run
