"""The RLM graph's steps as LangChain runs: each ``generate`` node run holds its root LM
call, each ``execute`` node run its code cells with their sub-calls; usage counted once
across the graph's runs and ``RLMNode``'s message; ``RLMChatModel`` inside ``create_agent``."""

from __future__ import annotations

from collections import Counter
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langchain_core.tracers.context import collect_runs
from langchain_core.tracers.schemas import Run
from langgraph.graph import START, MessagesState, StateGraph
from lg_support import ANSWER, QUESTION

from rlm_engine.scripted.server import ScriptedServer
from rlm_integrations.langchain import RLMChatModel
from rlm_integrations.langgraph import RLMNode, build_rlm_graph


def _walk(run: Run) -> list[Run]:
    return [run, *(r for c in run.child_runs for r in _walk(c))]


def _all(cb: Any) -> list[Run]:
    # collect_runs lists a graph's node runs as roots of their own (its handler is attached
    # per run by a configure hook, not inherited), so walk every root it has.
    return [r for top in cb.traced_runs for r in _walk(top)]


def _tokens(run: Run) -> int:
    if run.run_type != "llm" or not run.outputs:
        return 0
    msg = run.outputs["generations"][0][0]["message"]
    return int((msg["kwargs"].get("usage_metadata") or {}).get("total_tokens") or 0)


def _served(server: ScriptedServer) -> int:
    return sum(r.prompt_tokens + r.completion_tokens for r in server.stats.log if r.model)


def test_graph_steps_hold_root_calls_cells_and_sub_calls(
    graph_kwargs: dict[str, Any], haystack: str, scripted_server: ScriptedServer
) -> None:
    app = build_rlm_graph(**graph_kwargs).compile()
    with collect_runs() as cb:
        out = app.invoke({"context": haystack, "query": QUESTION})
    assert out["final_answer"] == ANSWER
    runs = _all(cb)
    generates = [r for r in runs if r.name == "generate"]
    executes = [r for r in runs if r.name == "execute"]
    iterations = out["iteration"]
    assert len(generates) == len(executes) == iterations
    for g in generates:  # one root call per generate step
        assert [(c.run_type, c.name) for c in g.child_runs] == [("llm", "root:scripted-root")]
    cells = [c for e in executes for c in e.child_runs]
    assert {c.run_type for c in cells} == {"tool"}
    assert len(cells) == sum(len(it["code_blocks"]) for it in out["history"])
    sub_runs = [s for c in cells for s in c.child_runs]
    calls = [s for it in out["history"] for b in it["code_blocks"] for s in b["subcalls"]]
    assert len(sub_runs) == len(calls) > 0
    assert all(s.run_type == "llm" and s.parent_run_id in {c.id for c in cells} for s in sub_runs)
    # Every request the server answered is one llm run; tokens add up to the server's.
    llm_runs = [r for r in runs if r.run_type == "llm"]
    assert len(llm_runs) == sum(1 for r in scripted_server.stats.log if r.model)
    assert sum(_tokens(r) for r in llm_runs) == _served(scripted_server)


def test_rlm_node_counts_each_token_once(
    graph_kwargs: dict[str, Any], haystack: str, scripted_server: ScriptedServer
) -> None:
    class State(MessagesState):
        document: str

    g = StateGraph(State).add_node("rlm", RLMNode(context_key="document", **graph_kwargs))
    g.add_edge(START, "rlm")
    with collect_runs() as cb:
        out = g.compile().invoke({"messages": [HumanMessage(QUESTION)], "document": haystack})
    msg = out["messages"][-1]
    assert msg.text == ANSWER
    in_runs = sum(_tokens(r) for r in _all(cb))
    # The runs and the message together count the server's tokens exactly once.
    assert in_runs + msg.usage_metadata["total_tokens"] == _served(scripted_server)
    assert in_runs == _served(scripted_server)
    assert msg.response_metadata["rlm_usage"]["total"]["total_tokens"] == _served(scripted_server)


def test_chat_model_inside_create_agent(haystack: str, scripted_server: ScriptedServer) -> None:
    @tool
    def lookup(name: str) -> str:
        """Look a name up."""
        return f"{name}: unknown"

    llm = RLMChatModel(
        model="scripted-root",
        sub_model="scripted-sub",
        base_url=scripted_server.base_url,
        api_key="sk-test",
        context=haystack,
        max_iterations=8,
    )
    agent = create_agent(llm, tools=[lookup])
    with collect_runs() as cb:
        out = agent.invoke({"messages": [HumanMessage(QUESTION)]})
    assert out["messages"][-1].text == ANSWER
    runs = _all(cb)
    (model_run,) = [r for r in runs if r.name == "RLMChatModel"]
    names = Counter(r.name for r in _walk(model_run)[1:])
    iterations = sum(n for k, n in names.items() if k.startswith("iteration "))
    assert iterations >= 1 and names["root:scripted-root"] == iterations
    assert names["repl"] >= 1 and any(k.endswith(":scripted-sub") for k in names)
    assert sum(_tokens(r) for r in runs) == _served(scripted_server)
