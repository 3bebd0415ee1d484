"""The graph's ``route`` node: ``mode="direct"|"auto"`` before the RLM loop's ``generate``.

Present only when the configuration's ``mode`` is not ``"rlm"`` (the default graph is
unchanged). The node asks the engine's router (:func:`rlm_engine.direct.complete`)
which path the new input takes: a direct answer is one LM call made here, and the graph
ends with it (``path="direct"``); otherwise the node records why (``path="rlm"``,
``path_reason``) and ``generate`` starts the RLM loop as usual. A provider's
context-length error on the direct call in ``auto`` routes to ``generate`` too, and what
the refused attempt spent (its call, any usage recorded for it, its time) is the loop's
run's (state key ``route_spent``): budgets and ``run_timeout`` hold as in ``RLM.completion``.

A direct answer is a run of its own: ``run_id``, ``status``, ``final_answer``, ``usage``
are set and ``history`` is empty. It is not a turn of the thread's REPL conversation
(nothing ran in a REPL), so a later RLM turn on the thread does not see it. To LangChain
tracers the direct call is one ``llm`` run ``direct:<model>`` under this node's run,
carrying its usage (as ``generate`` holds its root call), so ``RLMNode``'s message leaves
those tokens out.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping
from typing import Any

from langgraph.graph import END
from langgraph.runtime import get_runtime
from langgraph.types import Overwrite

from rlm_engine import direct
from rlm_engine.config import EventHandler, RLMConfig
from rlm_engine.resources import RunResources
from rlm_engine.state import RLMResult
from rlm_integrations.langchain.tracing import RunTree, node_run_tree
from rlm_integrations.langgraph.context_ref import ContextView
from rlm_integrations.langgraph.runtime import run_async, run_blocking, usage_rows, usage_summary
from rlm_integrations.langgraph.state import RLMGraphState


class _LoopChosen(Exception):
    """The router chose the RLM loop: the graph's ``generate`` runs it, not this node."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RouteStep:
    """The ``route`` node's body, bound to one RLM configuration."""

    def __init__(self, config: RLMConfig) -> None:
        self.config = config

    def route(self, state: RLMGraphState) -> dict[str, Any]:
        view, emit, tree = self._node_context(state)
        try:
            return run_blocking(self._route(view, emit))
        finally:
            if tree is not None:
                tree.close()

    async def aroute(self, state: RLMGraphState) -> dict[str, Any]:
        view, emit, tree = self._node_context(state)
        try:
            return await run_async(self._route(view, emit))
        finally:
            if tree is not None:
                tree.close()

    def _node_context(
        self, state: RLMGraphState
    ) -> tuple[Mapping[str, Any], EventHandler, RunTree | None]:
        """The state with ``context_ref`` readable, and progress -> ``stream_mode="custom"``
        (LangGraph's writer needs the node's context, which the session loop lacks) and the
        node's run tree: a direct call is one ``llm`` run under this node's run, with its
        usage (``RLMNode``'s message then leaves those tokens out)."""
        runtime = get_runtime()
        writer, node_context = runtime.stream_writer, contextvars.copy_context()
        tree = node_run_tree(self.config)

        def emit(event: dict[str, Any]) -> None:
            node_context.copy().run(writer, dict(event))
            if tree is not None:
                tree(event)

        return ContextView(state, runtime.store), emit, tree

    async def _route(self, state: Mapping[str, Any], emit: EventHandler) -> dict[str, Any]:
        context = state.get("context")
        if context is None:  # generate says what the graph needs
            return {"path": None, "path_reason": None, "route_spent": None}
        query = state.get("query")
        started = time.time()  # run_timeout counts from here, as in RLM.completion
        # RunResources adds the configured callback and verbose printer itself.
        shared = RunResources(self.config, on_event=emit)

        async def loop(reason: str) -> RLMResult:
            raise _LoopChosen(reason)

        try:
            result = await direct.complete(self.config, shared, context, query, rlm=loop)
        except _LoopChosen as chosen:
            # What routing spent (a refused direct attempt: its call, any usage recorded
            # for it, its time) is the loop's run's too: ``generate`` starts with it.
            spent = {
                "started_at": started,
                "calls": shared.budget.calls_started,
                "records": usage_rows(shared.usage, 0),
            }
            return {"path": "rlm", "path_reason": chosen.reason, "route_spent": spent}
        finally:
            await shared.aclose()
        return {
            "path": "direct",
            "path_reason": result.path_reason,
            "route_spent": None,
            "run_id": result.run_id,
            "status": result.status,
            "error": result.error,
            "final_answer": result.response,
            "partial_answer": None,
            "iteration": 0,
            "history": Overwrite([]),
            "pending_response": None,
            "pending_usage": None,
            "compaction": None,
            "usage": usage_summary(shared.usage),
            "usage_records": Overwrite(usage_rows(shared.usage, 0)),
        }


def after_route(state: RLMGraphState) -> str:
    """END after a direct answer, else the RLM loop's first step."""
    return END if state.get("path") == "direct" else "generate"


__all__ = ["RouteStep", "after_route"]
