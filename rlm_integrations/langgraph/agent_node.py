"""``RLMNode``: an RLM as one node of any graph (``MessagesState`` or a custom state).

The node reads the query (the last human message, or a state key) and the context (a
state key), runs the RLM graph as a subgraph - so ``stream(..., subgraphs=True)`` shows
its ``generate``/``execute``/``check_final`` steps, its checkpoints nest under the
parent's thread and a crashed parent resumes the RLM where it stopped - and appends one
``AIMessage`` carrying the answer.

Usage is counted once, as for ``RLMChatModel``: the RLM's LM calls are runs of their own
in a trace (``rlm_integrations.langchain.tracing``; a LangChain ``llm``/``sub_llm``
reports its calls itself), so the message's ``usage_metadata`` holds only what no such run
carried (a compaction summary, a call that failed before answering); the whole run is in
``response_metadata["rlm_usage"]``. Summing the graph's runs, or its messages plus its
runs, then counts every token once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.graph import StateGraph

from rlm_engine.config import DEFAULT_MAX_ITERATIONS
from rlm_integrations.langchain.tracing import reported_tokens
from rlm_integrations.langgraph.graph import build_rlm_graph, recursion_limit_for


class RLMNode(RunnableLambda):
    """Add with ``builder.add_node("rlm", RLMNode(backend=..., ...))``.

    Args:
        graph: the RLM graph to run (``build_rlm_graph(...)``, compiled or not); default:
            ``build_rlm_graph(**rlm_kwargs)``. Compiled without a checkpointer it uses the
            parent's.
        context_key: state key holding the context.
        messages_key: state key of the message list (``None`` for states without one);
            the query is its last human message and the answer is appended to it.
        query_key: state key holding the query instead of the last human message.
        output_key: state key to also write the answer text to.
        name: node name (and ``AIMessage.name``).
        **rlm_kwargs: ``build_rlm_graph`` keywords (``backend``, ``llm``, limits, ...).
    """

    def __init__(
        self,
        graph: Any = None,
        *,
        context_key: str = "context",
        messages_key: str | None = "messages",
        query_key: str | None = None,
        output_key: str | None = None,
        name: str = "rlm",
        **rlm_kwargs: Any,
    ) -> None:
        if messages_key is None and output_key is None:
            raise ValueError("RLMNode needs messages_key or output_key to write the answer to")
        if messages_key is None and query_key is None:
            raise ValueError("RLMNode needs messages_key or query_key to read the query from")
        # ``checkpointer=True``: the RLM graph keeps its state per thread of the parent
        # (with the parent's checkpointer), so the node called again on a thread continues
        # that thread's conversation: earlier runs' REPL variables are there.
        if graph is None:
            graph = build_rlm_graph(**rlm_kwargs).compile(checkpointer=True)
        elif rlm_kwargs:
            raise TypeError("Pass either a compiled graph or build_rlm_graph keywords, not both")
        elif isinstance(graph, StateGraph):
            graph = graph.compile(checkpointer=True)
        self.graph = graph
        self.context_key = context_key
        self.messages_key = messages_key
        self.query_key = query_key
        self.output_key = output_key
        limit = (graph.config or {}).get("recursion_limit")
        # A graph from build_rlm_graph carries its limit; a user's own graph gets the default's.
        self.recursion_limit = int(limit or recursion_limit_for(DEFAULT_MAX_ITERATIONS))
        super().__init__(self._run, self._arun, name=name)

    # -- state mapping -----------------------------------------------------------------
    def rlm_input(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """``{"context", "query"}`` for the RLM graph, from the parent state."""
        if self.context_key not in state or state[self.context_key] is None:
            raise ValueError(
                f"RLMNode: the state has no {self.context_key!r}; put the long input there "
                f"(or pass context_key=...)."
            )
        if self.query_key is not None:
            query = state.get(self.query_key)
        else:
            messages = state.get(self.messages_key) if self.messages_key is not None else None
            query = _last_human_text(messages or [])
            if query is None:
                raise ValueError(
                    f"RLMNode: no human message in state[{self.messages_key!r}] to use as "
                    "the query (or pass query_key=...)."
                )
        return {"context": state[self.context_key], "query": query}

    def state_update(self, out: Mapping[str, Any]) -> dict[str, Any]:
        """The parent-state update for an RLM graph output: one ``AIMessage``."""
        status = out.get("status")
        answer = out.get("final_answer") or out.get("partial_answer")
        if answer is None:
            answer = f"The RLM run ended with status {status!r}: {out.get('error') or ''}".strip()
        usage = out.get("usage") or {}
        total = usage.get("total") or {}
        shown_in, shown_out = reported_tokens(list(out.get("history") or []))
        if out.get("path") == "direct" and status == "final":  # one llm run under ``route``
            shown_in, shown_out = (
                int(total.get("input_tokens", 0)),
                int(total.get("output_tokens", 0)),
            )
        unreported_in = max(int(total.get("input_tokens", 0)) - shown_in, 0)
        unreported_out = max(int(total.get("output_tokens", 0)) - shown_out, 0)
        update: dict[str, Any] = {}
        if self.messages_key is not None:
            update[self.messages_key] = [
                AIMessage(
                    content=str(answer),
                    name=self.name,
                    usage_metadata={  # what no run of the trace carried
                        "input_tokens": unreported_in,
                        "output_tokens": unreported_out,
                        "total_tokens": unreported_in + unreported_out,
                    },
                    response_metadata={
                        "rlm_status": status,
                        "rlm_error": out.get("error"),
                        "rlm_iterations": out.get("iteration"),
                        "rlm_run_id": out.get("run_id"),
                        "rlm_usage": usage,
                        # mode direct/auto: "direct" (one LM call) or "rlm", and why
                        "rlm_path": out.get("path"),
                        "rlm_path_reason": out.get("path_reason"),
                    },
                )
            ]
        if self.output_key is not None:
            update[self.output_key] = str(answer)
        return update

    # -- node bodies -------------------------------------------------------------------
    def _config(self, config: RunnableConfig | None) -> RunnableConfig:
        parent = (config or {}).get("recursion_limit") or 0
        return {"recursion_limit": max(self.recursion_limit, int(parent))}

    def _run(self, state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        out = self.graph.invoke(self.rlm_input(state), self._config(config))
        return self.state_update(out)

    async def _arun(self, state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        out = await self.graph.ainvoke(self.rlm_input(state), self._config(config))
        return self.state_update(out)


def _last_human_text(messages: list[Any]) -> str | None:
    for m in reversed(messages):
        if isinstance(m, BaseMessage) and m.type == "human":
            return m.text
        if isinstance(m, Mapping) and m.get("role") in ("user", "human"):
            return str(m.get("content", ""))
    return None
