"""Live RLM sessions behind the graph: a process-local registry and rebuild after a crash.

A checkpoint holds the run's data, not its REPL: a Python namespace, open sockets and
worker processes cannot be serialized. So the live :class:`~rlm_engine.session.RLMSession`
of each run is kept here, keyed by the engine's run id (stored in the graph state). When a
node finds no live session for its run (a new process after a crash, or a checkpoint
from another branch), the session is rebuilt from the checkpointed state and
``RLMSession.replay()`` re-runs the recorded code cells, answering their sub-calls from
the recorded trajectory: calls paid for before the crash are not paid again.

All sessions live on one private event loop thread. The engine's clients and REPLs are
bound to the loop they started on, while LangGraph runs sync nodes in worker threads and
``ainvoke`` on the caller's loop; routing every step through one long-lived loop lets a
run started with ``invoke`` resume with ``ainvoke`` (and the reverse).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from langgraph.types import Overwrite

from rlm_engine.config import EventHandler, RLMConfig
from rlm_engine.resources import RunResources
from rlm_engine.session import RLMSession, RLMState
from rlm_engine.usage import Usage

T = TypeVar("T")

#: ``RLMState`` fields stored once per run in the ``run`` state key.
RUN_HEADER_KEYS = ("query", "context_info", "system", "first_user", "depth", "run_id", "started_at")
#: ``RLMState`` fields that mirror scalar state keys (the graph state wins on every step).
SCALAR_KEYS = (
    "pending_response",
    "pending_usage",
    "compaction",
    "final_answer",
    "partial_answer",
    "status",
    "error",
)


class _LoopThread:
    """One daemon thread running the event loop every live session is bound to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                ready = threading.Event()
                loop = asyncio.new_event_loop()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=serve, name="rlm-langgraph", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop())


_LOOP = _LoopThread()


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the session loop and wait (for sync nodes)."""
    if _LOOP.in_loop_thread():
        coro.close()
        raise RuntimeError(
            "A sync RLM graph call was made from inside RLM code (a REPL tool or callback); "
            "use `await app.ainvoke(...)` there instead."
        )
    return _LOOP.submit(coro).result()


async def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the session loop from any loop; cancelling the caller cancels it."""
    if _LOOP.in_loop_thread():
        return await coro
    return await asyncio.wrap_future(_LOOP.submit(coro))


def run_header(state: RLMState) -> dict[str, Any]:
    """The once-per-run part of an ``RLMState`` (see ``RUN_HEADER_KEYS``)."""
    d = state.to_dict()
    return {k: d[k] for k in RUN_HEADER_KEYS}


def usage_summary(usage: Usage) -> dict[str, Any]:
    """``Usage.to_dict()`` without the per-call records (those go to ``usage_records``)."""
    d = usage.to_dict()
    d.pop("records", None)
    return d


def usage_rows(usage: Usage, start: int) -> list[list[Any]]:
    """Ledger records from index ``start`` on, in ``Usage.to_dict()["records"]`` form."""
    return [
        [r.model, r.depth, r.role, r.input_tokens, r.output_tokens, r.cost]
        for r in list(usage.records)[start:]
    ]


class SessionRegistry:
    """Live sessions by run id. Only touched from the session loop thread."""

    def __init__(self) -> None:
        self._sessions: dict[str, RLMSession] = {}
        #: How many sessions were rebuilt from a checkpoint (tests and diagnostics).
        self.rebuilds = 0

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._sessions

    def __len__(self) -> int:
        return len(self._sessions)

    async def start_run(
        self, config: RLMConfig, state: Mapping[str, Any], *, logger: Any = None
    ) -> tuple[RLMSession, dict[str, Any]]:
        """Open a fresh session for the state's ``context``/``query``; returns the state
        updates that reset the thread's keys for the new run."""
        if "context" not in state or state["context"] is None:
            raise ValueError(
                "The RLM graph needs a context: app.invoke({'context': ..., 'query': ...}). "
                "To continue an interrupted run, invoke with None and the same thread_id."
            )
        old = state.get("run_id")
        if old:
            await self.discard(old)
        shared = RunResources(config, logger=logger)
        try:
            session = await RLMSession.open(
                config, state["context"], state.get("query"), shared=shared
            )
        except BaseException:
            await shared.aclose()
            raise
        self._sessions[session.state.run_id] = session
        updates: dict[str, Any] = {
            "run_id": session.state.run_id,
            "run": run_header(session.state),
            "history": Overwrite([]),
            "usage_records": Overwrite([]),
            "iteration": 0,
            "pending_response": None,
            "pending_usage": None,
            "final_answer": None,
            "partial_answer": None,
            "status": None,
            "error": None,
            "compaction": None,
        }
        return session, updates

    async def session_for(
        self,
        config: RLMConfig,
        state: Mapping[str, Any],
        *,
        logger: Any = None,
        on_event: EventHandler | None = None,
    ) -> RLMSession:
        """The live session of the state's run, rebuilt from the state when missing or stale."""
        run_id = state.get("run_id")
        header = state.get("run")
        if not run_id or not header:
            raise RuntimeError(
                "This RLM graph state has no run yet; a run starts at the 'generate' node."
            )
        history = list(state.get("history") or [])
        live = self._sessions.get(run_id)
        if live is not None and _in_step(live, history):
            return live
        if live is not None:  # the thread moved to another checkpoint (fork, time travel)
            await self.discard(run_id)
        session = await self._rebuild(config, state, header, history, logger, on_event)
        self._sessions[run_id] = session
        return session

    async def _rebuild(
        self,
        config: RLMConfig,
        state: Mapping[str, Any],
        header: Mapping[str, Any],
        history: list[dict[str, Any]],
        logger: Any,
        on_event: EventHandler | None,
    ) -> RLMSession:
        if "context" not in state:
            raise RuntimeError(
                "Cannot rebuild the RLM session: the checkpoint has no context. Was the "
                "graph state written by a different state schema?"
            )
        data = dict(header)
        data["iterations"] = history
        for key in SCALAR_KEYS:
            data[key] = state.get(key)
        rlm_state = RLMState.from_dict(data)
        shared = RunResources(config, logger=logger, on_event=on_event)
        rows = list(state.get("usage_records") or [])
        shared.usage.records.extend(Usage.from_dict({"records": rows}).records)
        shared.budget.calls_started = len(rows)
        run_timeout = config.run.run_timeout
        if run_timeout:  # the deadline counts from the run's start, not the rebuild
            elapsed = time.time() - rlm_state.started_at
            shared.budget.deadline = time.monotonic() + run_timeout - elapsed
        try:
            session = await RLMSession.open(
                config, state["context"], rlm_state.query, shared=shared, state=rlm_state
            )
        except BaseException:
            await shared.aclose()
            raise
        try:
            await session.replay()
        except BaseException:
            await _close(session)
            raise
        self.rebuilds += 1
        shared.emit(
            "session_rebuilt",
            depth=0,
            iteration=rlm_state.iteration,
            replayed_cells=sum(len(it.code_blocks) for it in rlm_state.iterations),
        )
        return session

    async def discard(self, run_id: str) -> None:
        """Close and forget a run's session (end of run, or a REPL left in doubt)."""
        session = self._sessions.pop(run_id, None)
        if session is not None:
            await _close(session)

    async def aclose_all(self) -> None:
        for run_id in list(self._sessions):
            await self.discard(run_id)


def _in_step(session: RLMSession, history: list[dict[str, Any]]) -> bool:
    """Whether the live REPL has run exactly the iterations the graph state records."""
    its = session.state.iterations
    if len(its) != len(history):
        return False
    return not its or its[-1].response == history[-1].get("response")


async def _close(session: RLMSession) -> None:
    try:
        await session.close()
    finally:
        if session.depth == 0:
            await session.shared.aclose()


REGISTRY = SessionRegistry()


def close_all_sessions(timeout: float = 10.0) -> None:
    """Close every live RLM session of this process (REPLs and LM clients).

    Runs end by closing their own session; this is for runs left paused (interrupts) or
    abandoned after an error, and runs automatically at interpreter exit.
    """
    if _LOOP._loop is None or _LOOP._loop.is_closed() or _LOOP.in_loop_thread():
        return
    with contextlib.suppress(Exception):
        _LOOP.submit(REGISTRY.aclose_all()).result(timeout=timeout)


atexit.register(close_all_sessions)
