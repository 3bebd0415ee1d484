"""Calls of one ``RLMModule`` that share one REPL: a held conversation.

By default every call of an ``RLMModule`` gets a fresh REPL. A conversation keeps one (an
engine :class:`~rlm_engine.conversation.Conversation`) across calls, so what a call
computed (chunk summaries, parsed tables, indexes) is there for the next one:

- each call's inputs are put in the REPL again under their field names (the new values
  replace the old ones; everything else the earlier calls made stays);
- the root reads, in ``variables_info`` after the inputs, a digest of the earlier calls
  (their inputs in short, their outputs, the variables each made) and is told the REPL
  persists; their code and output are in the REPL list ``history`` (``rlm_history`` when
  an input field is called ``history``);
- each call is one engine turn (``open_turn``, the engine's ``run``, ``end_turn``) with
  its own budget and usage, run by the same predictors as a single call, so DSPy traces,
  callbacks and usage tracking see it as a call of the module.

The conversation object is separate from the module: deep copies (optimizers) and pickles
of either start without a REPL, and the module's saved state is unchanged. Calls of one
conversation run one at a time; a second call while one runs is refused (a clear error)
instead of interleaving two turns in one REPL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import threading
from typing import TYPE_CHECKING, Any

import dspy

from rlm_engine.aio import LoopThread
from rlm_engine.clients.base import LMClient
from rlm_engine.conversation import HISTORY_VARIABLE, Conversation, Turn
from rlm_engine.session import run
from rlm_engine.types import LMResponse, Message
from rlm_integrations.dspy.lm_client import settings_snapshot
from rlm_integrations.dspy.tracing import CellToolCalls

if TYPE_CHECKING:
    from rlm_integrations.dspy.module import RLMModule

#: The conversation whose call is in progress in this context (set by
#: :meth:`RLMConversation.__call__` around ``module(...)``, read by ``forward``).
CALLING: contextvars.ContextVar[RLMConversation | None] = contextvars.ContextVar(
    "rlm_dspy_conversation", default=None
)
#: Earlier calls listed in the digest at most (the latest); all are in ``history``.
LISTED_CALLS = 10
_ANSWER_CHARS = 400
_INPUT_CHARS = 120
#: How long an interrupted call waits for its turn to stop (a running cell is interrupted).
_UNWIND_SECONDS = 30.0


class RLMConversation:
    """One REPL across calls of ``module``: ``conv(**inputs)`` / ``await conv.acall(...)``.

    Use as a context manager (sync or async), or call :meth:`close`; the REPL lives until
    then. ``turns`` holds the finished calls as engine turns (query, answer, status,
    variables made, usage).
    """

    def __init__(self, module: RLMModule) -> None:
        self.module = module
        self._engine: Conversation | None = None
        self._loop: LoopThread | None = None
        self._busy = threading.Lock()
        self._closed = False
        self._snapshot: Any = None
        self._task: asyncio.Task[Any] | None = None

    # -- calls ----------------------------------------------------------------------------
    def __call__(self, **inputs: Any) -> dspy.Prediction:
        """A call of the module (callbacks, usage tracking, traces as usual) in this REPL."""
        token = CALLING.set(self)
        try:
            return self.module(**inputs)
        finally:
            CALLING.reset(token)

    async def acall(self, **inputs: Any) -> dspy.Prediction:
        token = CALLING.set(self)
        try:
            return await self.module.acall(**inputs)
        finally:
            CALLING.reset(token)

    @property
    def turns(self) -> list[Turn]:
        return list(self._engine.turns) if self._engine is not None else []

    @property
    def history_variable(self) -> str:
        """The REPL list of earlier calls (``history``, unless an input takes that name)."""
        taken = set(self.module.signature.input_fields)
        return next(
            name for name in (HISTORY_VARIABLE, "rlm_history", "rlm_calls") if name not in taken
        )

    def run_turn(self, inputs: dict[str, Any]) -> dspy.Prediction:
        """``forward``'s side: one call, run on this conversation's loop (the REPL's host
        channel belongs to it). Interrupted while waiting (Ctrl-C), the turn stops too."""
        values = self.module._repl_inputs(inputs)  # bad input fails here, before the REPL
        future = self._submit(values)
        try:
            return future.result()
        except BaseException:
            if not future.done():
                self._cancel()
                concurrent.futures.wait([future], timeout=_UNWIND_SECONDS)
            raise

    async def arun_turn(self, inputs: dict[str, Any]) -> dspy.Prediction:
        """``aforward``'s side: the turn runs on the conversation's loop, awaited from the
        caller's; cancelling the caller cancels the turn."""
        values = self.module._repl_inputs(inputs)
        turn = asyncio.wrap_future(self._submit(values))
        try:
            return await asyncio.shield(turn)
        except asyncio.CancelledError:
            if not turn.done():
                self._cancel()
                await asyncio.wait({turn}, timeout=_UNWIND_SECONDS)
            raise

    def _submit(self, values: dict[str, Any]) -> concurrent.futures.Future[dspy.Prediction]:
        if self._closed:
            raise RuntimeError(
                "This RLMModule conversation is closed; start a new one with "
                "module.conversation() (or module.reset_conversation())."
            )
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(
                "This RLMModule conversation is already running a call: its calls are turns "
                "of one REPL and run one at a time. For parallel calls (dspy.Evaluate, "
                "optimizers) use a module without conversation=True, or one "
                "module.conversation() per thread."
            )
        try:
            return self._thread().submit(self._locked_turn(values))
        except BaseException:
            self._busy.release()
            raise

    async def _locked_turn(self, values: dict[str, Any]) -> dspy.Prediction:
        self._task = asyncio.current_task()
        try:
            return await self._aturn(values)
        finally:  # released before the caller wakes up, so its next call may start
            self._task = None
            self._busy.release()

    def _cancel(self) -> None:
        """Cancel the running turn on its loop (it is abandoned; the REPL stays). The caller
        waits up to ``_UNWIND_SECONDS`` for it to stop, so its next call finds it done."""

        async def cancel() -> None:
            if self._task is not None:
                self._task.cancel()

        if self._loop is not None:
            self._loop.submit(cancel())

    def _thread(self) -> LoopThread:
        if self._loop is None:
            self._loop = LoopThread("rlm-dspy-conversation")
        return self._loop

    async def _aturn(self, values: dict[str, Any]) -> dspy.Prediction:
        """One turn: inputs into the REPL, the turn's clients, the engine's loop."""
        module = self.module
        self._snapshot = settings_snapshot()
        conv = await self._start()
        for name, value in values.items():
            await conv.aadd_context(value, name)
        note = conversation_note(conv.turns, conv.history_variable)
        root, sub = module._clients(values, self._snapshot, note)
        cells = CellToolCalls.for_call(module)  # code cells as tool calls for DSPy callbacks
        query = call_query(module.signature, values)
        session = await conv.open_turn(query, clients=(root, sub), on_event=cells)
        try:
            root.bind(session)
            result = await run(session)
        except BaseException:
            conv.abandon_turn(session)
            raise
        await conv.end_turn(session, result)
        return module._prediction(result)

    async def _start(self) -> Conversation:
        if self._engine is None:
            config = self.module._config(lambda: self._snapshot, bind_inputs=False)
            # Every turn brings its own clients (open_turn(clients=...)); these stand in
            # for the conversation's and answer nothing.
            config = config.replace(backend=_PerTurnClients(), sub_backend=_PerTurnClients())
            engine = Conversation(config, None, history_variable=self.history_variable)
            try:
                await engine.astart()
            except RuntimeError as e:
                await engine.aclose()
                raise RuntimeError(f"RLMModule could not prepare the REPL: {e}") from e
            except BaseException:
                await engine.aclose()
                raise
            self._engine = engine
        return self._engine

    # -- life cycle -----------------------------------------------------------------------
    def close(self) -> None:
        """End the REPL (idempotent); later calls are refused."""
        self._closed = True
        loop, self._loop = self._loop, None
        engine, self._engine = self._engine, None
        if loop is None:
            return
        try:
            if engine is not None:
                loop.run(engine.aclose())
        finally:
            loop.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> RLMConversation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> RLMConversation:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # Copies and pickles (a program holding a conversation, deep-copied by an optimizer)
    # start a new conversation: a REPL and its loop cannot be copied.
    def __deepcopy__(self, memo: dict[int, Any]) -> RLMConversation:
        import copy

        return RLMConversation(copy.deepcopy(self.module, memo))

    def __copy__(self) -> RLMConversation:
        return RLMConversation(self.module)

    def __reduce__(self) -> tuple[Any, ...]:
        return (RLMConversation, (self.module,))


class HeldConversation:
    """The conversation an ``RLMModule(..., conversation=True)`` holds, made on first use.

    Copies and pickles of the holder are empty, so a deep-copied module (optimizers,
    ``reset_copy``) and a reloaded one start a conversation of their own.
    """

    def __init__(self) -> None:
        self.conversation: RLMConversation | None = None
        self._lock = threading.Lock()

    def get(self, module: RLMModule) -> RLMConversation:
        with self._lock:
            if self.conversation is None or self.conversation._closed:
                self.conversation = RLMConversation(module)
            return self.conversation

    def reset(self) -> None:
        with self._lock:
            conversation, self.conversation = self.conversation, None
        if conversation is not None:
            conversation.close()

    def __deepcopy__(self, memo: dict[int, Any]) -> HeldConversation:
        return HeldConversation()

    def __copy__(self) -> HeldConversation:
        return HeldConversation()

    def __reduce__(self) -> tuple[Any, ...]:
        return (HeldConversation, ())


class _PerTurnClients(LMClient):
    """The conversation's own client slot: RLMModule passes each turn's clients instead."""

    model_name = "dspy-per-call"
    context_chars = 100_000  # the sub-call predictor client's window, as in a single call

    async def acomplete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        raise RuntimeError("RLMModule conversations pass each turn's clients to open_turn")


def _short(value: Any) -> str:
    """An input as the digest shows it: short text whole, the rest by type and size."""
    if isinstance(value, str):
        if len(value) <= _INPUT_CHARS and "\n" not in value:
            return repr(value)
        return f"<str, {len(value):,} characters>"
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) <= _INPUT_CHARS:
        return text
    size = f", {len(value)} items" if isinstance(value, list | tuple | dict) else ""
    return f"<{type(value).__name__}{size}, {len(text):,} characters>"


def call_query(signature: type[dspy.Signature], values: dict[str, Any]) -> str:
    """The engine turn's query: which outputs were asked from which inputs, in short."""
    outputs = ", ".join(signature.output_fields)
    inputs = ", ".join(f"{name}={_short(value)}" for name, value in values.items())
    return f"Produce {outputs} from {inputs}"


def conversation_note(turns: list[Turn], history_variable: str) -> str:
    """What the root reads after the inputs: the REPL persists, and the earlier calls."""
    if not turns:
        return (
            "This call is the first of a conversation: the REPL and every variable you make "
            "stay for the next calls, so keep useful intermediate results in variables."
        )
    lines = [
        "This call continues a conversation: the REPL kept every variable the earlier calls "
        "made (reuse them instead of computing them again) and holds their code and output "
        f"in the list `{history_variable}`. The inputs above are this call's. Earlier calls:"
    ]
    shown = turns[-LISTED_CALLS:]
    skipped = len(turns) - len(shown)
    if skipped:
        lines.append(f"(calls 1-{skipped} are not listed: see `{history_variable}`)")
    for number, turn in enumerate(shown, skipped + 1):
        answer = turn.answer if turn.answer is not None else f"(no answer: {turn.status})"
        if len(answer) > _ANSWER_CHARS:
            answer = answer[:_ANSWER_CHARS] + " [...]"
        made = ", ".join(turn.variables) if turn.variables else "none"
        lines.append(f"{number}. {turn.query} -> {answer}; variables made: {made}")
    return "\n".join(lines)


__all__ = ["CALLING", "HeldConversation", "RLMConversation", "call_query", "conversation_note"]
