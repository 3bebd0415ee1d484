"""``RLMNode`` inside parent graphs: MessagesState agents and custom states."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command
from lg_support import ANSWER, QUESTION
from typing_extensions import TypedDict

from rlm_engine.scripted import ScriptedModel
from rlm_integrations.langchain import ScriptedChatModel
from rlm_integrations.langgraph import RLMNode, build_rlm_graph


class AgentState(MessagesState):
    document: str
    route: str


def _agent(rlm: RLMNode) -> StateGraph:
    """A small agent: a router, the RLM for long documents, a plain reply otherwise."""

    def router(state: AgentState) -> dict[str, Any]:
        return {"route": "rlm" if len(state.get("document") or "") > 10_000 else "small"}

    def small(state: AgentState) -> dict[str, Any]:
        return {"messages": [AIMessage("The document is short; no RLM needed.")]}

    def wrap_up(state: AgentState) -> dict[str, Any]:
        return {"messages": [AIMessage(f"Done: {state['messages'][-1].text}")]}

    g = StateGraph(AgentState)
    g.add_node("router", router)
    g.add_node("rlm", rlm)
    g.add_node("small", small)
    g.add_node("wrap_up", wrap_up)
    g.add_edge(START, "router")
    g.add_conditional_edges("router", lambda s: s["route"], {"rlm": "rlm", "small": "small"})
    g.add_edge("rlm", "wrap_up")
    g.add_edge("small", END)
    g.add_edge("wrap_up", END)
    return g


def test_rlm_node_in_a_messages_agent(graph_kwargs, haystack, scripted_server):
    app = _agent(RLMNode(context_key="document", **graph_kwargs)).compile()
    out = app.invoke({"messages": [HumanMessage(QUESTION)], "document": haystack})
    rlm_msg, final = out["messages"][-2:]
    assert isinstance(rlm_msg, AIMessage) and rlm_msg.name == "rlm"
    assert rlm_msg.text == ANSWER
    assert final.text == f"Done: {ANSWER}"
    prompt, completion = scripted_server.stats.tokens()
    # Every LM call is a run of its own (tests/langgraph/test_tracing_graph.py): the message
    # carries no usage of them, the whole run is in its response_metadata.
    assert rlm_msg.usage_metadata == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    total = rlm_msg.response_metadata["rlm_usage"]["total"]
    assert (total["input_tokens"], total["output_tokens"]) == (prompt, completion)
    assert rlm_msg.response_metadata["rlm_status"] == "final"
    assert rlm_msg.response_metadata["rlm_iterations"] == 2
    short = app.invoke({"messages": [HumanMessage(QUESTION)], "document": "tiny"})
    assert short["messages"][-1].text.startswith("The document is short")


def test_subgraphs_stream_shows_the_rlm_steps(graph_kwargs, haystack):
    app = _agent(RLMNode(context_key="document", **graph_kwargs)).compile()
    seen: list[tuple[tuple[str, ...], str]] = []
    for ns, update in app.stream(
        {"messages": [HumanMessage(QUESTION)], "document": haystack},
        stream_mode="updates",
        subgraphs=True,
    ):
        seen.extend((ns, node) for node in update)
    parent = [node for ns, node in seen if ns == ()]
    inner = [(ns, node) for ns, node in seen if ns]
    assert parent == ["router", "rlm", "wrap_up"]
    assert [node for _, node in inner] == ["generate", "execute", "check_final"] * 2
    assert all(ns[0].split(":")[0] == "rlm" for ns, _ in inner)  # "rlm": per-thread state


async def test_rlm_node_async_with_checkpointer_and_custom_events(graph_kwargs, haystack):
    app = _agent(RLMNode(context_key="document", **graph_kwargs)).compile(
        checkpointer=InMemorySaver()
    )
    cfg = {"configurable": {"thread_id": "agent"}}
    events = []
    async for ns, mode, data in app.astream(
        {"messages": [HumanMessage(QUESTION)], "document": haystack},
        cfg,
        stream_mode=["custom", "values"],
        subgraphs=True,
    ):
        if mode == "custom":
            events.append((ns, data["event"]))
    assert events and all(ns and ns[0].split(":")[0] == "rlm" for ns, _ in events)
    assert events[-1][1] == "final"
    state = await app.aget_state(cfg)
    assert state.values["messages"][-1].text == f"Done: {ANSWER}"


class Report(TypedDict, total=False):
    source: str
    question: str
    answer: str


def test_rlm_node_with_custom_state_keys(graph_kwargs, haystack):
    g = StateGraph(Report)
    g.add_node(
        "rlm",
        RLMNode(
            context_key="source",
            query_key="question",
            messages_key=None,
            output_key="answer",
            **graph_kwargs,
        ),
    )
    g.add_edge(START, "rlm")
    g.add_edge("rlm", END)
    out = g.compile().invoke({"source": haystack, "question": QUESTION})
    assert out["answer"] == ANSWER


def test_rlm_node_with_langchain_chat_models(haystack):
    """``llm=`` / ``sub_llm=`` run through the LangChain engineer's ``LangChainClient``."""
    scripted = ScriptedModel()
    root = ScriptedChatModel(model="scripted-root", scripted=scripted)
    sub = ScriptedChatModel(model="scripted-sub", scripted=scripted)
    rlm_graph = build_rlm_graph(llm=root, sub_llm=sub, max_iterations=6)  # compiled by the node
    app = _agent(RLMNode(rlm_graph, context_key="document")).compile()
    out = app.invoke({"messages": [HumanMessage(QUESTION)], "document": haystack})
    msg = out["messages"][-2]
    assert msg.text == ANSWER
    usage = msg.response_metadata["rlm_usage"]
    assert set(usage["by_model"]) == {"scripted-root", "scripted-sub"}
    assert usage["total"]["input_tokens"] > 0
    assert msg.usage_metadata["input_tokens"] == 0  # the LangChain models' runs carry it


def test_rlm_node_errors_are_actionable(graph_kwargs):
    node = RLMNode(context_key="document", **graph_kwargs)
    with pytest.raises(ValueError, match="no 'document'"):
        node.rlm_input({"messages": [HumanMessage(QUESTION)]})
    with pytest.raises(ValueError, match="no human message"):
        node.rlm_input({"messages": [AIMessage("hi")], "document": "text"})
    with pytest.raises(ValueError, match="output_key"):
        RLMNode(messages_key=None, query_key="q", **graph_kwargs)
    with pytest.raises(TypeError, match="not both"):
        RLMNode(build_rlm_graph(**graph_kwargs).compile(), max_iterations=3)


def test_code_review_inside_the_rlm_node_pauses_the_parent(graph_kwargs, haystack):
    rlm = RLMNode(context_key="document", review_code=True, **graph_kwargs)
    app = _agent(rlm).compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "agent-review"}}
    out = app.invoke({"messages": [HumanMessage(QUESTION)], "document": haystack}, cfg)
    reviews = 0
    while "__interrupt__" in out:
        assert out["__interrupt__"][0].value["kind"] == "rlm_code_review"
        reviews += 1
        out = app.invoke(Command(resume=True), cfg)
    assert reviews == 2
    assert out["messages"][-1].text == f"Done: {ANSWER}"


def test_the_rlm_node_continues_the_threads_conversation(graph_kwargs, scripted_model):
    from langgraph.graph import START, MessagesState, StateGraph

    class State(MessagesState):
        document: str

    scripted_model.add_rule(
        lambda r: r.is_rlm_root and "first question" in r.first_user,
        ["```repl\nkeep = 41\n```", "FINAL_VAR(keep)"],
    )
    scripted_model.add_rule(
        lambda r: r.is_rlm_root and "second question" in r.first_user,
        ["```repl\nres = str(keep + 1)\n```", "FINAL_VAR(res)"],
    )
    node = RLMNode(context_key="document", **graph_kwargs)
    app = (
        StateGraph(State)
        .add_node("rlm", node)
        .add_edge(START, "rlm")
        .compile(checkpointer=InMemorySaver())
    )
    cfg = {"configurable": {"thread_id": "agent-chat"}}
    one = app.invoke({"messages": [HumanMessage("the first question")], "document": "doc"}, cfg)
    assert one["messages"][-1].text == "41"
    two = app.invoke({"messages": [HumanMessage("the second question")]}, cfg)
    assert two["messages"][-1].text == "42"  # `keep` survived from the first turn
