"""The graphs ``langgraph.json`` serves: the RLM graph, and an agent graph with an RLM node.

``langgraph dev`` (or ``langgraph up``, or LangGraph Platform) loads these two factories.
The server calls a factory with each run's config, so every run gets its
:class:`~rlm_engine.config.RLMConfig` from the server's ``RLM_<OPTION>`` environment
variables and the run's ``configurable`` (:mod:`rlm_integrations.langgraph.server_config`),
and LangGraph Server supplies the checkpointer and the store.

``rlm`` - the RLM loop itself (:func:`~rlm_integrations.langgraph.build_rlm_graph`). Input
(:class:`~rlm_integrations.langgraph.RLMInput`): ``{"context": ..., "query": "..."}``, or
``{"context_ref": {"path": ...} | {"store": {...}}, "query": "..."}`` (see
:mod:`~rlm_integrations.langgraph.context_ref`). Output
(:class:`~rlm_integrations.langgraph.RLMOutput`): ``final_answer``, ``partial_answer``,
``status``, ``error``, ``usage``, ``iteration``, ``history``, ``run_id``, ``query``. The full
state (every key documented in :class:`~rlm_integrations.langgraph.RLMGraphState`) is what
``client.threads.get_state`` returns; ``pending_response`` is the code waiting for
``execute`` when a run is created with ``interrupt_before=["execute"]``. A new ``query``
on the same thread is a follow-up in the same REPL.

``rlm_agent`` - a chat agent (:class:`AgentState`): ``{"messages": [{"role": "user",
"content": "..."}], "context": ...}`` (or ``context_ref``); its ``rlm`` node answers the last
user message over the context and appends an AI message carrying the answer and the run's
usage. Without a context, the agent says what it needs instead of calling a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from typing_extensions import TypedDict

from rlm_integrations.langgraph.agent_node import RLMNode
from rlm_integrations.langgraph.context_ref import ContextRef
from rlm_integrations.langgraph.graph import build_rlm_graph
from rlm_integrations.langgraph.server_config import served_config
from rlm_integrations.langgraph.state import WriteOnceChannel


def _configurable(config: RunnableConfig | None) -> Mapping[str, Any]:
    return (config or {}).get("configurable") or {}


def rlm_graph(config: RunnableConfig) -> CompiledStateGraph:
    """LangGraph Server factory of the ``rlm`` graph (module docstring)."""
    return build_rlm_graph(served_config(_configurable(config))).compile()


class AgentState(TypedDict, total=False):
    """State of ``rlm_agent``: the chat, and the long input it answers over."""

    #: The conversation; the last user message is the RLM's query.
    messages: Annotated[list[AnyMessage], add_messages]
    #: The long input (written once: checkpoints after the first do not repeat it).
    context: Annotated[Any, WriteOnceChannel()]
    #: Where the context is instead (wins over ``context``; see ``context_ref``).
    context_ref: ContextRef | None


class RLMRefNode(RLMNode):
    """:class:`RLMNode` that also passes a ``context_ref`` on to the RLM graph."""

    def rlm_input(self, state: Mapping[str, Any]) -> dict[str, Any]:
        ref = state.get("context_ref")
        if ref is None:
            return super().rlm_input(state)
        query = super().rlm_input({**state, self.context_key: ""})["query"]
        return {"context_ref": ref, "query": query}


def _has_context(state: AgentState) -> str:
    has = state.get("context_ref") is not None or state.get("context") is not None
    return "rlm" if has else "ask_for_context"


def ask_for_context(state: AgentState) -> dict[str, Any]:
    """The agent's answer when there is nothing to read: say how to give it."""
    text = (
        "I answer questions over a long input. Send it as 'context' (any text or JSON) or "
        "as 'context_ref' ({'path': ...} on the server, or {'store': {'namespace': [...], "
        "'key': ...}}) together with your question."
    )
    return {"messages": [AIMessage(content=text, name="rlm")]}


def agent_graph(config: RunnableConfig) -> CompiledStateGraph:
    """LangGraph Server factory of the ``rlm_agent`` graph (module docstring)."""
    rlm = build_rlm_graph(served_config(_configurable(config))).compile(checkpointer=True)
    builder = StateGraph(AgentState)
    builder.add_node("rlm", RLMRefNode(rlm, context_key="context"))
    builder.add_node("ask_for_context", ask_for_context)
    builder.add_conditional_edges(START, _has_context, ["rlm", "ask_for_context"])
    builder.add_edge("rlm", END)
    builder.add_edge("ask_for_context", END)
    return builder.compile()


__all__ = ["AgentState", "RLMRefNode", "agent_graph", "ask_for_context", "rlm_graph"]
