"""A direct answer in the graph (mode="direct"/"auto") as a LangChain run: one ``llm`` run
``direct:<model>`` under the ``route`` node's run, carrying its usage; ``RLMNode``'s message
then carries none of those tokens (each token counted once across runs and messages)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tracers.context import collect_runs
from langchain_core.tracers.schemas import Run
from langgraph.graph import START, MessagesState, StateGraph

from rlm_engine.scripted import ScriptedModel, ScriptedServer
from rlm_integrations.langgraph import RLMNode, build_rlm_graph
from tests.support.mode_support import (
    BACKENDS,
    QUESTION,
    haystack,
    server_tokens,
    teach_direct,
    wire_options,
)


def _walk(run: Run) -> list[Run]:
    return [run, *(r for c in run.child_runs for r in _walk(c))]


def _all(cb: Any) -> list[Run]:
    return [r for top in cb.traced_runs for r in _walk(top)]


def _tokens(run: Run) -> int:
    if run.run_type != "llm" or not run.outputs:
        return 0
    msg = run.outputs["generations"][0][0]["message"]
    return int((msg["kwargs"].get("usage_metadata") or {}).get("total_tokens") or 0)


def _direct_run(runs: list[Run]) -> Run:
    (route,) = [r for r in runs if r.name == "route"]
    assert [(c.run_type, c.name) for c in route.child_runs] == [("llm", "direct:scripted-root")]
    return route.child_runs[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_graph_direct_answer_is_one_llm_run_under_route(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel, backend: str
) -> None:
    teach_direct(scripted_model)
    app = build_rlm_graph(
        **wire_options(scripted_server, backend), environment="local", mode="auto"
    )
    with collect_runs() as cb:
        out = app.compile().invoke({"context": haystack("1618"), "query": QUESTION})
    assert out["path"] == "direct" and out["final_answer"] == "1618"
    direct = _direct_run(_all(cb))
    assert direct.error is None and "1618" in str(direct.outputs)
    assert (
        _tokens(direct)
        == server_tokens(scripted_server)
        == out["usage"]["total"]["total_tokens"]
        > 0
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_rlm_node_direct_answer_counts_each_token_once(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel, backend: str
) -> None:
    class State(MessagesState):
        document: str

    teach_direct(scripted_model)
    node = RLMNode(
        context_key="document",
        **wire_options(scripted_server, backend),
        environment="local",
        mode="auto",
    )
    g = StateGraph(State).add_node("rlm", node)
    g.add_edge(START, "rlm")
    with collect_runs() as cb:
        out = g.compile().invoke(
            {"messages": [HumanMessage(QUESTION)], "document": haystack("1618")}
        )
    msg = out["messages"][-1]
    assert msg.content == "1618" and msg.response_metadata["rlm_path"] == "direct"
    runs = _all(cb)
    assert _tokens(_direct_run(runs)) == server_tokens(scripted_server) > 0
    # The message carries what no run carried: nothing here.
    assert msg.usage_metadata["total_tokens"] == 0
    llm_runs = {r.id: r for r in runs if r.run_type == "llm"}
    assert sum(_tokens(r) for r in llm_runs.values()) == server_tokens(scripted_server)
