"""Conversations: one REPL that outlives a completion, for chats and agents that ask again.

A single completion starts a REPL, answers, and drops it. A conversation keeps the REPL
(and the clients) across turns: variables one turn computes are there for the next, and
material added later gets its own variable (``context_1``, ``context_2`` or a given name)
while ``context`` stays what it was. Each turn is an ordinary completion run by the same
loop (``rlm_engine.session.run``) with its own budget; only its opening message differs:
the root sees the contexts, a digest of earlier turns (query, answer, variables made) and
the new query, and is free to answer a follow-up that needs no new look at the material
at once. Earlier turns' transcripts are in the REPL as ``history``.

A conversation's state is plain data (:meth:`Conversation.to_dict`); in a new process
:meth:`Conversation.restore` rebuilds the REPL by replaying every turn's recorded cells
with their recorded sub-call answers, so nothing is paid twice.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rlm_engine import prompts
from rlm_engine.aio import LoopThread, run_sync
from rlm_engine.clients import LMClient
from rlm_engine.clients.configured import aclose_made, make_clients
from rlm_engine.config import EventHandler, RLMConfig
from rlm_engine.display import event_handler
from rlm_engine.environments import Environment, HostFunction, make_environment
from rlm_engine.inputs import EmptyInputError, check_material, prepare_input
from rlm_engine.resources import RunResources
from rlm_engine.session import RLMSession, run
from rlm_engine.state import RLMResult, RLMState

T = TypeVar("T")
#: The REPL variable holding earlier turns (query, answer, each iteration's code and output).
HISTORY_VARIABLE = "history"
#: Host function that hands a value from the host to the REPL (contexts, ``history``).
_TAKE = "_rlm_take"
#: Characters of an earlier answer shown in the digest of later turns.
_ANSWER_KEEP = 1_000
_OUTPUT_KEEP = 2_000  # characters of each cell's output kept in ``history``
#: ``RLMResult.path_reason`` of a turn: ``mode`` does not route turns (``rlm_engine.direct``);
#: a direct answer would leave nothing in the REPL for the next turn.
TURN_PATH_REASON = "conversation turns run the loop: the REPL outlives each turn"


@dataclass
class ContextEntry:
    """One piece of material in the REPL: its variable, description and arrival turn."""

    name: str
    info: dict[str, Any]
    turn: int  # the number of turns completed when it was added

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "info": self.info, "turn": self.turn}


@dataclass
class Turn:
    """A finished turn: its digest for later prompts and its state for replay."""

    query: str | None
    answer: str | None
    status: str
    variables: list[str]
    state: dict[str, Any]
    usage: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "answer": self.answer,
            "status": self.status,
            "variables": self.variables,
            "state": self.state,
            "usage": self.usage,
        }

    @classmethod
    def from_run(cls, session: RLMSession, result: RLMResult, variables: list[str]) -> Turn:
        """A finished run as a turn: its digest, usage, and state as kept for replay."""
        usage = result.usage.to_dict()
        usage.pop("records", None)
        return cls(
            session.state.query,
            result.answer,
            result.status,
            variables,
            stored_state(session.state),
            usage,
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Turn:
        return cls(
            d.get("query"),
            d.get("answer"),
            d.get("status", "final"),
            list(d.get("variables", [])),
            dict(d["state"]),
            dict(d.get("usage", {})),
        )


class Conversation:
    """A persistent REPL and the turns asked of it; use as an (async) context manager.

    ``send(query, context=None)`` runs one turn and returns its ``RLMResult``;
    ``add_context(x, name=None)`` puts more material in the REPL; ``close()`` ends it.
    """

    def __init__(
        self,
        config: RLMConfig,
        context: Any = None,
        *,
        on_event: EventHandler | None = None,
        history_variable: str = HISTORY_VARIABLE,
    ) -> None:
        self.config = config
        self.on_event = on_event
        #: The REPL list of earlier turns; another name when ``history`` is the caller's
        #: (a DSPy signature's ``history: dspy.History`` input).
        self.history_variable = history_variable
        self.contexts: list[ContextEntry] = []
        self.turns: list[Turn] = []
        self._initial, _ = prepare_input(context, None, require_material=False)
        self._env: Environment | None = None
        self._clients: tuple[LMClient, LMClient] | None = None
        self._active: RLMSession | None = None
        self._outbox: dict[str, Any] = {}
        self._keys = itertools.count()
        self._closed = False
        # Sync use runs everything on one private loop: the REPL's host channel and the
        # clients' connections belong to the loop that made them.
        self._loop: LoopThread | None = None
        self._before: set[str] = set()

    def _sync(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            if self._env is not None:
                coro.close()
                raise RuntimeError(
                    "This conversation was started with the async API; use its async "
                    "methods (asend, aadd_context, aclose)."
                )
            self._loop = LoopThread("rlm-conversation")
        return self._loop.run(coro)

    # -- life cycle -----------------------------------------------------------------------
    async def astart(self) -> Conversation:
        """Make the clients and start the REPL with the first context (once)."""
        if self._env is not None:
            return self
        if self._closed:
            raise RuntimeError("This conversation is closed; start a new one.")
        repl = self.config.repl
        env = make_environment(repl.environment, repl.environment_kwargs)
        try:
            await env.start(self._initial, self._functions(), setup=repl.repl_setup)
        except BaseException:
            await env.close()
            raise
        self._env = env
        self._clients = make_clients(self.config)
        if self._initial is not None:
            self.contexts.append(
                ContextEntry("context", prompts.describe_context(self._initial), 0)
            )
        return self

    async def aclose(self) -> None:
        """Stop the REPL and release the clients (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._env is not None:
                await self._env.close()
        finally:
            if self._clients is not None:
                await aclose_made(self.config, *self._clients)

    async def __aenter__(self) -> Conversation:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Conversation:
        return self._sync(self.astart())

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Sync form of :meth:`aclose`."""
        if self._loop is None:
            run_sync(self.aclose())
            return
        try:
            self._loop.run(self.aclose())
        finally:
            self._loop.close()

    # -- material -------------------------------------------------------------------------
    async def aadd_context(self, value: Any, name: str | None = None) -> str:
        """Put ``value`` in the REPL as ``name`` (default ``context_1``, ``context_2``...);
        returns the variable name. ``context`` keeps what it held."""
        env = (await self.astart())._env
        assert env is not None
        taken = {c.name for c in self.contexts}
        if name is None:
            name = "context" if "context" not in taken and not self.turns else _next_name(taken)
        if not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"A context name must be a public Python identifier, got {name!r}")
        value, _ = prepare_input(value, None, require_material=False)
        await self._put(env, name, value)
        self.contexts = [c for c in self.contexts if c.name != name]
        self.contexts.append(ContextEntry(name, prompts.describe_context(value), len(self.turns)))
        return name

    def add_context(self, value: Any, name: str | None = None) -> str:
        """Sync form of :meth:`aadd_context`."""
        return self._sync(self.aadd_context(value, name))

    # -- turns ----------------------------------------------------------------------------
    async def asend(
        self,
        query: str,
        context: Any = None,
        *,
        name: str | None = None,
        on_event: EventHandler | None = None,
    ) -> RLMResult:
        """One turn: the root answers ``query`` with the REPL as earlier turns left it."""
        if context is not None:
            await self.aadd_context(context, name)
        session = await self.open_turn(query, on_event=on_event)
        try:
            result = await run(session)
        except BaseException:
            self.abandon_turn(session)
            raise
        await self.end_turn(session, result)
        return result

    async def open_turn(
        self,
        query: str | None,
        *,
        on_event: EventHandler | None = None,
        state: RLMState | None = None,
        clients: tuple[LMClient, LMClient] | None = None,
    ) -> RLMSession:
        """Start a turn and return its session, for drivers that run the loop's steps
        themselves (the LangGraph nodes); :meth:`end_turn` closes it. ``state`` resumes a
        turn whose process died (call ``session.replay()`` next). ``clients`` replace the
        conversation's for this turn (a LangChain call's clients carry its callbacks)."""
        if state is None:
            _, cleaned = prepare_input(None, query, require_material=False)
            first = not self.turns and self._initial is not None and len(self.contexts) <= 1
            if cleaned is None and not first:  # a first turn may find its task in context
                raise EmptyInputError(
                    "A later conversation turn needs a query (a non-empty string)."
                )
            if cleaned is None:
                check_material(self._initial, None)
            query = cleaned
        if self._active is not None:
            raise RuntimeError("A turn is already running in this conversation.")
        await self.astart()
        session = self._open_turn(query, on_event, state, clients)
        self._before = set(await session.env.list_variables())
        self._active = session
        return session

    async def end_turn(self, session: RLMSession, result: RLMResult) -> Turn:
        """Record a finished turn (digest, state for replay) and refresh ``history``."""
        if session is not self._active:
            raise RuntimeError("end_turn() takes the session of the running turn.")
        self._active = None
        after = await session.env.list_variables()
        made = [v for v in after if v not in self._before and v != self.history_variable]
        turn = Turn.from_run(session, result, made)
        self.turns.append(turn)
        await self._put(session.env, self.history_variable, self._history())
        return turn

    def abandon_turn(self, session: RLMSession) -> None:
        """Drop a turn whose run raised (cancelled, interrupted): no turn is recorded, the
        REPL keeps what its cells made, and the next :meth:`open_turn` may start."""
        if session is self._active:
            self._active = None

    def send(self, query: str, context: Any = None, *, name: str | None = None) -> RLMResult:
        """Sync form of :meth:`asend`; works inside a running event loop too."""
        return self._sync(self.asend(query, context, name=name))

    def _open_turn(
        self,
        query: str | None,
        on_event: EventHandler | None,
        state: RLMState | None,
        clients: tuple[LMClient, LMClient] | None = None,
    ) -> RLMSession:
        assert self._env is not None and self._clients is not None
        root, sub = clients or self._clients
        # The turn's session and resources borrow the conversation's REPL and clients and
        # are never closed themselves: the conversation closes what it owns.
        shared = RunResources(
            self.config,
            root_client=root,
            sub_client=sub,
            on_event=event_handler(self.on_event, on_event),
        )
        if state is None:
            state = self._turn_state(query, sub.context_chars)
        session = RLMSession(self.config, shared, state, self._env, root_client=root)
        if shared.logger is not None and not state.iterations:
            shared.logger.start_run(session)
        return session

    def _turn_state(self, query: str | None, sub_window: int) -> RLMState:
        main = next((c for c in self.contexts if c.name == "context"), None)
        info = main.info if main else {}
        if main is not None and not self.turns and len(self.contexts) == 1:
            first_user = prompts.first_user_message(info, query)  # a first turn is a run
        else:
            first_user = turn_message(self.contexts, self.turns, query, self.history_variable)
        state = RLMState.opening(self.config, info, first_user, query, sub_window=sub_window)
        state.path_reason = TURN_PATH_REASON
        return state

    def _history(self) -> list[dict[str, Any]]:
        out = []
        for turn in self.turns:
            iterations = RLMState.from_dict(turn.state).iterations
            out.append(
                {
                    "query": turn.query,
                    "answer": turn.answer,
                    "status": turn.status,
                    "iterations": [
                        {
                            "code": [b.code for b in it.code_blocks],
                            "output": [b.stdout[-_OUTPUT_KEEP:] for b in it.code_blocks],
                        }
                        for it in iterations
                    ],
                }
            )
        return out

    # -- the host side of the REPL ----------------------------------------------------------
    def _functions(self) -> dict[str, HostFunction]:
        """Host functions that answer for whichever turn is running, and the hand-over."""
        names = ["llm_query", "llm_query_batched", "rlm_query", "rlm_query_batched"]
        names += list(self.config.repl.tools)
        fns = {name: HostFunction(name, self._proxy(name)) for name in names}
        for name, tool in self.config.repl.tools.items():
            fns[name] = HostFunction(name, self._proxy(name), tool.doc)
        fns[_TAKE] = HostFunction(_TAKE, self._take)
        return fns

    def _proxy(self, name: str) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            session = self._active
            if session is None:
                raise RuntimeError(f"{name}() can only be called while a turn is running")
            return await session.subcalls.functions()[name].fn(*args, **kwargs)

        return call

    async def _take(self, key: str) -> Any:
        return self._outbox.pop(key)

    async def _put(self, env: Environment, name: str, value: Any) -> None:
        """Bind ``name`` in the REPL to ``value`` (sent through the host-function channel,
        so every environment kind takes it the same way)."""
        key = f"k{next(self._keys)}"
        self._outbox[key] = value
        try:
            result = await env.execute(f"{name} = {_TAKE}({key!r})")
        finally:
            self._outbox.pop(key, None)
        if result.error:
            raise RuntimeError(f"Could not put {name!r} in the REPL: {result.error}")

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The conversation as JSON-serializable data (contexts by description only: the
        material itself is the caller's to keep and to hand back to :meth:`restore`)."""
        return {
            "contexts": [c.to_dict() for c in self.contexts],
            "turns": [t.to_dict() for t in self.turns],
        }

    @classmethod
    async def arestore(
        cls,
        config: RLMConfig,
        data: dict[str, Any],
        contexts: dict[str, Any],
        *,
        on_event: EventHandler | None = None,
        into: Conversation | None = None,
    ) -> Conversation:
        """Rebuild a conversation in a new process: the REPL is replayed turn by turn with
        the recorded sub-call answers (nothing is paid again). ``contexts`` maps every
        context name in ``data`` to its value."""
        entries = [ContextEntry(c["name"], c["info"], int(c["turn"])) for c in data["contexts"]]
        missing = [e.name for e in entries if e.name not in contexts]
        if missing:
            raise ValueError(f"Restoring this conversation needs the contexts {missing}")
        for entry in entries:
            _check_same_material(entry, contexts[entry.name])
        conv = into or cls(config, contexts.get("context"), on_event=on_event)
        await conv.astart()
        try:
            await conv._replay(entries, [Turn.from_dict(t) for t in data["turns"]], contexts)
        except BaseException:
            await conv.aclose()
            raise
        return conv

    async def _replay(
        self, entries: list[ContextEntry], turns: list[Turn], contexts: dict[str, Any]
    ) -> None:
        assert self._env is not None and self._clients is not None
        for index, turn in enumerate([*turns, None]):
            for entry in entries:
                if entry.turn == index and entry.name != "context":
                    await self.aadd_context(contexts[entry.name], entry.name)
            if turn is None:
                break
            session = await self.open_turn(turn.query or "", state=RLMState.from_dict(turn.state))
            try:
                await session.replay()
            finally:
                self._active = None
            self.turns.append(turn)
            await self._put(self._env, self.history_variable, self._history())

    @classmethod
    def restore(
        cls, config: RLMConfig, data: dict[str, Any], contexts: dict[str, Any]
    ) -> Conversation:
        """Sync form of :meth:`arestore`."""
        conv = cls(config, contexts.get("context"))
        conv._loop = LoopThread("rlm-conversation")
        try:
            return conv._loop.run(cls.arestore(config, data, contexts, into=conv))
        except BaseException:
            conv._loop.close()
            raise


def _check_same_material(entry: ContextEntry, value: Any) -> None:
    """Refuse material other than the one a conversation was made over: replay re-runs
    the recorded code over it and serves the recorded sub-call answers, so another
    document would rebuild a REPL whose variables and answers silently disagree. The
    description kept for it (type, size, preview) is compared, which costs no hashing."""
    prepared, _ = prepare_input(value, None, require_material=False)
    now = json.loads(json.dumps(prompts.describe_context(prepared), default=str))
    was = json.loads(json.dumps(entry.info, default=str))
    if now != was:
        raise ValueError(
            f"contexts[{entry.name!r}] is not the material this conversation was made over "
            f"(it was {_describe(was)}; got {_describe(now)}). Pass the same material, or "
            "start a new conversation over the new one."
        )


def stored_state(state: RLMState) -> dict[str, Any]:
    """A finished turn's state as kept for replay and the ``history`` variable: the code
    and recorded sub-call answers in full, outputs cut to their last ``_OUTPUT_KEEP``
    characters (replay re-creates them), child-RLM transcripts dropped (their answers are
    recorded). Keeps a stored conversation small however long its turns printed."""
    d = state.to_dict()
    for it in d["iterations"]:
        it["response"] = _tail(it["response"])
        it["feedback"] = ""
        for block in it["code_blocks"]:
            block["stdout"] = _tail(block["stdout"])
            block["stderr"] = _tail(block["stderr"])
            for call in block["subcalls"]:
                call["children"] = []
    return d


def _tail(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= _OUTPUT_KEEP else "[...]" + text[-_OUTPUT_KEEP:]


def _next_name(taken: set[str]) -> str:
    return next(f"context_{i}" for i in itertools.count(1) if f"context_{i}" not in taken)


def turn_message(
    contexts: list[ContextEntry],
    turns: list[Turn],
    query: str | None,
    history_variable: str = HISTORY_VARIABLE,
) -> str:
    """The opening message of a later turn: what the REPL holds, what was asked and
    answered before, and the new query - without forcing another look at the material."""
    if turns:
        lines = ["This is a later turn of a conversation; the REPL keeps all earlier turns made."]
    else:
        lines = ["This is the first turn of a conversation; the REPL persists across turns."]
    if contexts:
        lines.append("")
        lines.append("Material in the REPL:")
        for c in contexts:
            lines.append(f"- `{c.name}`: {_describe(c.info)}")
    if turns:
        lines.append("")
        lines.append(
            f"Earlier turns (their full transcripts are in the REPL list `{history_variable}`):"
        )
        for i, t in enumerate(turns, 1):
            answer = (t.answer or f"(no answer: {t.status})")[:_ANSWER_KEEP]
            made = f" Variables it made: {', '.join(t.variables)}." if t.variables else ""
            lines.append(f"{i}. Query: {t.query}\n   Answer: {answer}{made}")
    lines.append("")
    lines.append(
        f"Query: {query}"
        if query
        else "Query: the task is stated in the material; find it and complete it."
    )
    lines.append("")
    lines.append(
        "Use the REPL when the query needs the material or earlier results. If it needs "
        "neither (thanks, a rephrasing or translation of an earlier answer), answer at "
        "once with FINAL(...)."
    )
    return "\n".join(lines)


def _describe(info: dict[str, Any]) -> str:
    text = f"{info['type']} with {info['total_chars']:,} characters"
    if "num_items" in info:
        text += f", {info['num_items']} items"
    if "num_keys" in info:
        text += f", {info['num_keys']} keys"
    return f"{text}; preview: {info['preview'][:160]!r}"


__all__ = ["HISTORY_VARIABLE", "ContextEntry", "Conversation", "Turn", "turn_message"]
