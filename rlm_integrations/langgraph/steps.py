"""The bodies of the RLM graph's nodes: each one calls one ``RLMSession`` step.

``generate`` -> ``RLMSession.generate()``, ``execute`` -> ``RLMSession.execute()``,
``check_final`` -> ``RLMSession.check_final()`` (and ``finish()`` when the run is over);
nothing here decides the loop. Each body runs on the session loop thread (see
:mod:`rlm_integrations.langgraph.runtime`), reads the graph state as the source of truth
and returns only what the step changed.

Root LM errors: the engine's client retries transient failures itself (SDK retries); if
the call still fails, ``generate`` raises :class:`RootLMCallError`, which the node's
``RetryPolicy`` retries. When the attempts are used up the error propagates by default
(``on_error="raise"``): the checkpoint keeps every finished iteration and
``app.invoke(None, config)`` continues later. ``on_error="status"`` ends the run instead
with ``status == "error"``, as ``RLM.completion`` does.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import Any, Literal

from langgraph.runtime import Runtime, get_runtime
from langgraph.types import Overwrite, interrupt

from rlm_engine.config import EventHandler, RLMConfig
from rlm_engine.display import event_handler
from rlm_engine.session import RLMSession
from rlm_engine.usage import Usage
from rlm_integrations.langchain.tracing import node_run_tree
from rlm_integrations.langgraph.context_ref import ContextView
from rlm_integrations.langgraph.review import apply_review, review_request
from rlm_integrations.langgraph.runtime import (
    REGISTRY,
    SCALAR_KEYS,
    run_async,
    run_blocking,
    usage_rows,
    usage_summary,
)
from rlm_integrations.langgraph.state import RLMGraphState


class RootLMCallError(RuntimeError):
    """The root LM call failed after the client's own retries (network, 5xx, 429...)."""


class RLMSteps:
    """The three node bodies, bound to one RLM configuration."""

    def __init__(
        self,
        config: RLMConfig,
        *,
        review_code: bool,
        on_error: Literal["raise", "status"],
        max_attempts: int,
    ) -> None:
        self.config = config
        # The configured callback and verbose printer; the stream writer comes on top.
        self.on_event = event_handler(config.observe.on_event, verbose=config.observe.verbose)
        self.review_code = review_code
        self.on_error = on_error
        self.max_attempts = max_attempts

    # -- node entry points (sync and async share the step coroutines) --------------------
    # Plain functions of the state, wrapped as ``RunnableLambda(sync, async)`` nodes; the
    # LangGraph runtime (stream writer, attempt number) comes from ``get_runtime()``.
    # The state reaches the steps as a ``ContextView``: a ``context_ref`` is read (from a
    # file, or the run's store) only if the step builds a REPL.
    def generate(self, state: RLMGraphState) -> dict[str, Any]:
        runtime = get_runtime()
        view = ContextView(state, runtime.store)
        return run_blocking(self._generate(view, self._emitter(runtime), _attempt(runtime)))

    async def agenerate(self, state: RLMGraphState) -> dict[str, Any]:
        runtime = get_runtime()
        view = ContextView(state, runtime.store)
        return await run_async(self._generate(view, self._emitter(runtime), _attempt(runtime)))

    def execute(self, state: RLMGraphState) -> dict[str, Any]:
        runtime = get_runtime()
        view = ContextView(self._reviewed(state), runtime.store)
        return run_blocking(self._execute(view, self._emitter(runtime)))

    async def aexecute(self, state: RLMGraphState) -> dict[str, Any]:
        runtime = get_runtime()
        view = ContextView(self._reviewed(state), runtime.store)
        return await run_async(self._execute(view, self._emitter(runtime)))

    def check_final(self, state: RLMGraphState) -> dict[str, Any]:
        runtime = get_runtime()
        view = ContextView(state, runtime.store)
        return run_blocking(self._check_final(view, self._emitter(runtime)))

    async def acheck_final(self, state: RLMGraphState) -> dict[str, Any]:
        runtime = get_runtime()
        view = ContextView(state, runtime.store)
        return await run_async(self._check_final(view, self._emitter(runtime)))

    # -- helpers that must run in the node's own context ---------------------------------
    def _emitter(self, runtime: Runtime) -> EventHandler:
        """Engine progress events -> ``stream_mode="custom"``, and the node's run tree
        (root calls, cells and sub-calls as runs under this node's run; ``.tracing``)."""
        writer = runtime.stream_writer
        # LangGraph's writer reads the node's config from a context variable; sub-call
        # events are emitted from tasks the REPL thread started, which lack it.
        node_context = contextvars.copy_context()
        tree = node_run_tree(self.config)

        def emit(event: dict[str, Any]) -> None:
            node_context.copy().run(writer, dict(event))
            if tree is not None:
                tree(event)

        return emit

    def _reviewed(self, state: RLMGraphState) -> RLMGraphState:
        """Pause for a person when ``review_code`` is on; returns the state to execute.

        ``interrupt()`` comes first in the node, so on resume nothing has run twice.
        """
        response = state.get("pending_response")
        if not self.review_code or response is None:
            return state
        decision = interrupt(review_request(response, int(state.get("iteration") or 0) + 1))
        return {**state, "pending_response": apply_review(response, decision)}

    # -- the steps (run on the session loop) -------------------------------------------------
    async def _generate(
        self, state: Mapping[str, Any], emit: EventHandler, attempt: int
    ) -> dict[str, Any]:
        if _starts_new_run(state):
            session, updates = await REGISTRY.start_run(self.config, state)
            session.state.path_reason = state.get("path_reason")  # the route node's (mode)
            _carry_route_spent(session, updates, state.get("route_spent"))
            plain = {k: state[k] for k in SCALAR_KEYS if k in state}  # never loads a context
            view = {**plain, **{k: v for k, v in updates.items() if not isinstance(v, Overwrite)}}
            view["history"], view["usage_records"] = [], []
        else:
            session = await self._session(state, emit)
            updates = {}
            view = {k: state[k] for k in (*SCALAR_KEYS, "usage_records") if k in state}
        _sync(session, view)
        session.shared.on_event = event_handler(self.on_event, emit)
        mark = len(view.get("usage_records") or [])
        try:
            text = await session.within_deadline(session.generate())
            st = session.state
            retry = self.on_error == "raise" or attempt < self.max_attempts
            if text is None and st.status == "error" and retry:
                raise RootLMCallError(st.error or "The root LM call failed.")
        except BaseException:
            if updates:  # the new run was never checkpointed; the next attempt opens another
                await REGISTRY.discard(session.state.run_id)
            raise
        updates |= {
            "pending_response": text,
            "pending_usage": st.pending_usage,
            "status": st.status,
            "error": st.error,
            "compaction": st.compaction,  # set when this call compacted the history
        }
        return updates | _usage_updates(session, mark, reset="history" in updates)

    async def _execute(self, state: Mapping[str, Any], emit: EventHandler) -> dict[str, Any]:
        session = await self._session(state, emit)
        _sync(session, state)
        session.shared.on_event = event_handler(self.on_event, emit)
        mark = len(state.get("usage_records") or [])
        response = state.get("pending_response")
        if response is None:
            return {}
        try:
            it = await session.within_deadline(session.execute(response))
        except BaseException:
            # The REPL may hold half of a cell's effects: never reuse it, rebuild instead.
            await REGISTRY.discard(session.state.run_id)
            raise
        st = session.state
        updates: dict[str, Any] = {
            "pending_response": None,
            "pending_usage": None,
            "status": st.status,
            "error": st.error,
        }
        if it is not None:
            updates |= {
                "history": [it.to_dict()],
                "iteration": it.index,
                "final_answer": st.final_answer,
            }
        return updates | _usage_updates(session, mark)

    async def _check_final(self, state: Mapping[str, Any], emit: EventHandler) -> dict[str, Any]:
        session = await self._session(state, emit)
        _sync(session, state)
        session.shared.on_event = event_handler(self.on_event, emit)
        mark = len(state.get("usage_records") or [])
        if not session.check_final():
            return {}
        try:
            result = await session.finish()
        except BaseException:
            await REGISTRY.discard(session.state.run_id)
            raise
        updates = await REGISTRY.end_run(session, result)  # the REPL stays for a follow-up
        updates |= {
            "status": result.status,
            "error": result.error,
            "final_answer": result.response,
            "partial_answer": result.partial_answer,
        }
        return updates | _usage_updates(session, mark)

    async def _session(self, state: Mapping[str, Any], emit: EventHandler) -> RLMSession:
        return await REGISTRY.session_for(self.config, state, on_event=emit)


def _attempt(runtime: Runtime) -> int:
    info = runtime.execution_info
    return info.node_attempt if info is not None else 1


def _starts_new_run(state: Mapping[str, Any]) -> bool:
    """A new input on a thread starts a run; ``invoke(None)`` continues the current one."""
    header = state.get("run")
    if not state.get("run_id") or not header:
        return True
    if state.get("status") is not None:  # the previous run on this thread is over
        return True
    return header.get("query") != state.get("query")


def _carry_route_spent(
    session: RLMSession, updates: dict[str, Any], spent: Mapping[str, Any] | None
) -> None:
    """Start a new run with what the ``route`` node spent before choosing the loop (auto's
    refused direct attempt): its usage records and started call count against the budgets,
    its time against ``run_timeout`` (the run starts when routing did), as in
    ``RLM.completion``, where routing and the loop share one run's resources."""
    if not spent:
        return
    shared, st = session.shared, session.state
    shared.usage.records[0:0] = Usage.from_dict({"records": spent.get("records") or []}).records
    shared.budget.calls_started += int(spent.get("calls") or 0)
    started = float(spent.get("started_at") or st.started_at)
    if started < st.started_at:
        if shared.budget.deadline is not None:
            shared.budget.deadline -= st.started_at - started
        st.started_at = started
        updates["run"] = {**updates["run"], "started_at": started}


def _sync(session: RLMSession, state: Mapping[str, Any]) -> None:
    """The graph state is the source of truth (``update_state`` edits included)."""
    for key in SCALAR_KEYS:
        setattr(session.state, key, state.get(key))


def _usage_updates(session: RLMSession, mark: int, *, reset: bool = False) -> dict[str, Any]:
    usage = session.shared.usage
    rows = usage_rows(usage, mark)
    if not rows and not reset:
        return {}
    return {
        "usage": usage_summary(usage),
        "usage_records": Overwrite(rows) if reset else rows,
    }
