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
import hashlib
import json
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from langgraph.types import Overwrite

from rlm_engine import prompts
from rlm_engine.config import EventHandler, RLMConfig
from rlm_engine.conversation import Conversation
from rlm_engine.environments.auto import AUTO, auto_decision, resolve_auto
from rlm_engine.session import RLMResult, RLMSession, RLMState
from rlm_engine.usage import Usage
from rlm_integrations.langgraph.context_ref import ContextView

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
                    _exempt_from_blockbuster()
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


def _exempt_from_blockbuster(on: bool = True) -> None:
    """Let this thread block: it runs the RLM sessions' own loop, not a server's.

    ``langgraph dev`` turns on blockbuster, which raises ``BlockingError`` for a blocking
    call in any thread with a running event loop, to protect the server's loop. The
    engine's loop is a separate thread (starting a worker calls ``os.getcwd``, a context
    is written to a file), so nothing here holds up the server. Blockbuster skips a thread
    whose thread-local ``_skip`` flag is set; if a later blockbuster drops that flag the
    server tests fail and ``langgraph dev --allow-blocking`` is the way out.
    """
    module = sys.modules.get("blockbuster.blockbuster")
    skip = getattr(module, "_skip", None)
    if skip is not None:
        skip.value = on


def _resolve_auto_exempt() -> None:
    """``environment="auto"``'s one-time probe (it runs its own loop in a helper thread)."""
    _exempt_from_blockbuster()
    try:
        resolve_auto()
    finally:
        _exempt_from_blockbuster(False)


async def resolve_environment(config: RLMConfig) -> None:
    """Make ``auto``'s decision (cached per process) where blockbuster allows it."""
    if config.repl.environment == AUTO and not auto_decision().get("decided"):
        await asyncio.to_thread(_resolve_auto_exempt)


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
    return [r.row() for r in list(usage.records)[start:]]


class SessionRegistry:
    """Live conversations by id, and the session of each running turn by run id.

    A thread's runs are the turns of one engine :class:`~rlm_engine.conversation.
    Conversation`: a new query on a thread whose run is over continues in the same REPL
    (variables from earlier runs are there) as long as the context is the same; a new
    context starts a new conversation. At most ``max_live`` conversations stay open per
    process (least recently used closed first); a closed or missing one is rebuilt from
    the checkpoint's ``turns`` by replay. Only touched from the session loop thread.
    """

    def __init__(self, max_live: int = 32) -> None:
        self._convs: OrderedDict[str, Conversation] = OrderedDict()
        self._sessions: dict[str, RLMSession] = {}
        self._conv_of: dict[str, str] = {}  # run id -> conversation id
        self.max_live = max_live
        #: How many conversations were rebuilt from a checkpoint (tests and diagnostics).
        self.rebuilds = 0

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._sessions

    def __len__(self) -> int:
        """Live conversations (each holds a REPL)."""
        return len(self._convs)

    async def start_run(
        self, config: RLMConfig, state: Mapping[str, Any], *, logger: Any = None
    ) -> tuple[RLMSession, dict[str, Any]]:
        """Open the session of a new run for the state's ``query``: the next turn of the
        thread's conversation when its context is unchanged, else the first turn of a new
        one. Returns the state updates that reset the thread's run keys."""
        # A context by reference is versioned without reading it (context_ref.ContextView).
        ref_version = state.fingerprint() if isinstance(state, ContextView) else None
        if ref_version is None and ("context" not in state or state["context"] is None):
            raise ValueError(
                "The RLM graph needs a context: app.invoke({'context': ..., 'query': ...}) "
                "or {'context_ref': ...}. To continue an interrupted run, invoke with None "
                "and the same thread_id."
            )
        await resolve_environment(config)
        old_run = state.get("run_id")
        if old_run and old_run in self._sessions:  # an unfinished run is abandoned
            await self.discard(old_run)
        updates: dict[str, Any] = {}
        conv_id = state.get("conversation_id")
        conv: Conversation | None = None
        fingerprint = ref_version or context_fingerprint(state["context"])
        if conv_id and fingerprint == state.get("context_sha"):
            conv = await self._conversation(config, state, conv_id)
        else:
            if conv_id:
                await self._drop(conv_id)
            conv_id = uuid.uuid4().hex[:12]
            conv = Conversation(config, state["context"])
            await conv.astart()
            self._keep(conv_id, conv)
            updates["turns"] = Overwrite([])
            updates["context_sha"] = fingerprint
        try:
            session = await conv.open_turn(state.get("query"))
        except BaseException:
            if "turns" in updates:
                await self._drop(conv_id)
            raise
        self._sessions[session.state.run_id] = session
        self._conv_of[session.state.run_id] = conv_id
        await self.evict()
        updates |= {
            "conversation_id": conv_id,
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
        conv_id = self._conv_of.get(run_id)
        turns = len(state.get("turns") or [])
        conv = self._convs.get(conv_id) if conv_id else None
        if (
            live is not None
            and conv is not None
            and conv_id is not None
            and len(conv.turns) == turns
            and _in_step(live, history)
        ):
            self._convs.move_to_end(conv_id)
            return live
        if live is not None or (conv_id and conv_id in self._convs):
            # The thread moved to another checkpoint (fork, time travel): the REPL holds
            # effects the state does not record; rebuild it.
            await self.discard(run_id)
        session = await self._rebuild(config, state, header, history, on_event)
        self._sessions[run_id] = session
        return session

    async def end_run(self, session: RLMSession, result: RLMResult) -> dict[str, Any]:
        """Record a finished run as a turn of its conversation; the REPL stays open for
        the thread's next query. Returns the state update (the turn)."""
        run_id = session.state.run_id
        conv_id = self._conv_of.pop(run_id, None)
        self._sessions.pop(run_id, None)
        conv = self._convs.get(conv_id) if conv_id else None
        if conv is None:
            return {}
        turn = await conv.end_turn(session, result)
        return {"turns": [turn.to_dict()]}

    async def _conversation(
        self, config: RLMConfig, state: Mapping[str, Any], conv_id: str
    ) -> Conversation:
        """The thread's conversation, live when it matches the state, else rebuilt."""
        conv = self._convs.get(conv_id)
        turns = list(state.get("turns") or [])
        if conv is not None and len(conv.turns) == len(turns) and conv._active is None:
            self._convs.move_to_end(conv_id)
            return conv
        await self._drop(conv_id)
        await resolve_environment(config)
        conv = await Conversation.arestore(
            config, _conversation_data(state, turns), {"context": state["context"]}
        )
        self.rebuilds += 1
        self._keep(conv_id, conv)
        return conv

    async def _rebuild(
        self,
        config: RLMConfig,
        state: Mapping[str, Any],
        header: Mapping[str, Any],
        history: list[dict[str, Any]],
        on_event: EventHandler | None,
    ) -> RLMSession:
        if "context" not in state:
            raise RuntimeError(
                "Cannot rebuild the RLM session: the checkpoint has no context. Was the "
                "graph state written by a different state schema?"
            )
        conv_id = state.get("conversation_id") or uuid.uuid4().hex[:12]
        conv = await self._conversation(config, state, conv_id)
        data = dict(header)
        data["iterations"] = history
        for key in SCALAR_KEYS:
            data[key] = state.get(key)
        rlm_state = RLMState.from_dict(data)
        session = await conv.open_turn(rlm_state.query, on_event=on_event, state=rlm_state)
        shared = session.shared
        rows = list(state.get("usage_records") or [])
        shared.usage.records.extend(Usage.from_dict({"records": rows}).records)
        # Every call started holds a usage row, except a refused direct attempt of the
        # ``route`` node that recorded nothing: it counted against max_llm_calls too.
        spent = state.get("route_spent") or {}
        unrecorded = max(0, int(spent.get("calls") or 0) - len(spent.get("records") or []))
        shared.budget.calls_started = len(rows) + unrecorded
        run_timeout = config.run.run_timeout
        if run_timeout:  # the deadline counts from the run's start, not the rebuild
            elapsed = time.time() - rlm_state.started_at
            shared.budget.deadline = time.monotonic() + run_timeout - elapsed
        self._conv_of[rlm_state.run_id] = conv_id
        try:
            await session.replay()
        except BaseException:
            await self._drop(conv_id)
            raise
        shared.emit(
            "session_rebuilt",
            depth=0,
            iteration=rlm_state.iteration,
            replayed_cells=sum(len(it.code_blocks) for it in rlm_state.iterations),
        )
        return session

    def _keep(self, conv_id: str, conv: Conversation) -> None:
        self._convs[conv_id] = conv
        self._convs.move_to_end(conv_id)

    async def evict(self) -> None:
        """Close the least recently used idle conversations past ``max_live``."""
        idle = [c for c, conv in self._convs.items() if conv._active is None]
        for conv_id in idle[: max(0, len(self._convs) - self.max_live)]:
            await self._drop(conv_id)

    async def _drop(self, conv_id: str) -> None:
        conv = self._convs.pop(conv_id, None)
        for run_id in [r for r, c in self._conv_of.items() if c == conv_id]:
            self._conv_of.pop(run_id, None)
            self._sessions.pop(run_id, None)
        if conv is not None:
            await conv.aclose()

    async def discard(self, run_id: str) -> None:
        """Forget a run's session and close its conversation's REPL (a REPL left in doubt
        is never reused: the next step rebuilds it from the checkpoint)."""
        self._sessions.pop(run_id, None)
        conv_id = self._conv_of.pop(run_id, None)
        if conv_id is not None:
            await self._drop(conv_id)

    async def aclose_all(self) -> None:
        for conv_id in list(self._convs):
            await self._drop(conv_id)
        self._sessions.clear()
        self._conv_of.clear()


def context_fingerprint(context: Any) -> str:
    """A digest of the context's content: a new query with the same context continues the
    thread's conversation; any change starts a new one (~0.1 s for 50 MB)."""
    if isinstance(context, str):
        data = context.encode("utf-8", "surrogatepass")
    else:
        data = json.dumps(context, sort_keys=True, default=repr).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def _conversation_data(state: Mapping[str, Any], turns: list[dict[str, Any]]) -> dict[str, Any]:
    info = prompts.describe_context(state["context"])
    return {"contexts": [{"name": "context", "info": info, "turn": 0}], "turns": turns}


def _in_step(session: RLMSession, history: list[dict[str, Any]]) -> bool:
    """Whether the live REPL has run exactly the iterations the graph state records."""
    its = session.state.iterations
    if len(its) != len(history):
        return False
    return not its or its[-1].response == history[-1].get("response")


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
