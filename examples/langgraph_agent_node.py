"""An RLM as one node of a LangGraph agent: ``RLMNode`` next to ordinary nodes.

    uv run python examples/langgraph_agent_node.py

The parent graph is a ``MessagesState`` agent with a ``document`` key. A router sends
questions about long documents to the RLM node and answers small talk itself; a final
node turns the RLM's answer into a reply. ``stream(..., subgraphs=True)`` shows the RLM's
own ``generate``/``execute``/``check_final`` steps inside the parent's ``rlm`` step, and
the RLM's ``AIMessage`` carries the token usage of the whole run in ``usage_metadata``.

With ``OPENAI_API_KEY`` set it uses OpenAI (``RLM_MODEL`` / ``RLM_SUB_MODEL``, default
gpt-5-mini / gpt-5-nano); otherwise the offline scripted model on 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph

from rlm_integrations.langgraph import RLMNode


class AgentState(MessagesState):
    document: str


def make_contract(clauses: int = 6_000) -> str:
    rows = [f"Clause {i}: the parties agree to standard term {i}." for i in range(clauses)]
    rows.insert(clauses * 2 // 3, "Clause X: the termination notice period is 90 days.")
    return "\n".join(rows)


@contextmanager
def rlm_kwargs() -> Iterator[dict[str, Any]]:
    """RLM configuration: OpenAI when a key is set, else the scripted server."""
    if os.environ.get("OPENAI_API_KEY"):
        yield {
            "backend_kwargs": {"model_name": os.environ.get("RLM_MODEL", "gpt-5-mini")},
            "sub_backend_kwargs": {"model_name": os.environ.get("RLM_SUB_MODEL", "gpt-5-nano")},
        }
        return
    from rlm_engine.scripted import ScriptedServer

    with ScriptedServer() as server:
        print(f"No OPENAI_API_KEY: using the scripted model at {server.base_url}\n")
        yield {
            "backend_kwargs": {"model_name": "scripted-root", "base_url": server.base_url},
            "sub_backend_kwargs": {"model_name": "scripted-sub", "base_url": server.base_url},
        }


def route(state: AgentState) -> str:
    """Long documents go to the RLM; everything else gets a direct reply."""
    return "rlm" if len(state.get("document") or "") > 20_000 else "chat"


def chat(state: AgentState) -> dict[str, Any]:
    return {"messages": [AIMessage("Happy to help; share a document and ask about it.")]}


def reply(state: AgentState) -> dict[str, Any]:
    answer = state["messages"][-1]
    tokens = answer.usage_metadata["total_tokens"] if answer.usage_metadata else 0
    text = f"From the document: {answer.text} (read with an RLM, {tokens:,} tokens)"
    return {"messages": [AIMessage(text)]}


def build_agent(rlm: RLMNode) -> Any:
    g = StateGraph(AgentState)
    g.add_node("rlm", rlm)
    g.add_node("chat", chat)
    g.add_node("reply", reply)
    g.add_conditional_edges(START, route, {"rlm": "rlm", "chat": "chat"})
    g.add_edge("rlm", "reply")
    g.add_edge("reply", END)
    g.add_edge("chat", END)
    return g.compile(checkpointer=InMemorySaver())


def main() -> None:
    contract = make_contract()
    with rlm_kwargs() as kwargs:
        rlm = RLMNode(context_key="document", backend="openai", sub_backend="openai", **kwargs)
        agent = build_agent(rlm)
        cfg = {"configurable": {"thread_id": "contract-review"}}
        question = HumanMessage("What is the termination notice period?")
        print(f"Question about a {len(contract):,}-character contract:")
        for ns, update in agent.stream(
            {"messages": [question], "document": contract},
            cfg,
            stream_mode="updates",
            subgraphs=True,
        ):
            where = " > ".join(n.split(":")[0] for n in ns) or "agent"
            for node in update:
                print(f"  {where}: {node}")
        for msg in agent.get_state(cfg).values["messages"]:
            print(f"{msg.type:>5}: {msg.text}")
        rlm_msg = agent.get_state(cfg).values["messages"][-2]
        print("RLM usage_metadata:", rlm_msg.usage_metadata)
        print("RLM status:", rlm_msg.response_metadata["rlm_status"])


if __name__ == "__main__":
    main()
