"""An engine ``LMClient`` that calls a ``dspy.LM``, so DSPy sees every call.

DSPy's settings (``dspy.context(lm=...)``, the usage tracker, the optimizer's trace, the
caller modules that collect history) live in a context variable. The engine runs sub-calls
as tasks started from REPL threads, which do not inherit it, so clients here take a
snapshot of the caller's settings (``settings_snapshot``) and re-enter it around each call
(``dspy_scope``). Each call also runs under its own nested usage tracker: DSPy rolls it up
into the caller's tracker, and the engine's ``Usage`` ledger gets the exact token counts.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dspy
from dspy.dsp.utils.settings import thread_local_overrides
from dspy.utils.callback import BaseCallback
from dspy.utils.exceptions import AdapterParseError
from dspy.utils.usage_tracker import UsageTracker, track_usage

from rlm_engine.clients.base import LMClient, compute_cost, price_for
from rlm_engine.clients.streaming import attach_partial_usage, estimate_tokens, sent_chars
from rlm_engine.types import LMResponse, Message
from rlm_integrations.dspy import cut_replies

T = TypeVar("T")


def settings_snapshot() -> Any:
    """The calling thread's DSPy overrides, to re-enter from other threads and tasks."""
    return thread_local_overrides.get()


@contextlib.contextmanager
def dspy_scope(snapshot: Any) -> Iterator[None]:
    """Run with the DSPy settings captured by ``settings_snapshot``."""
    if snapshot is None:
        yield
        return
    token = thread_local_overrides.set(snapshot)
    try:
        yield
    finally:
        thread_local_overrides.reset(token)


@dataclass
class Measured:
    """Tokens DSPy's usage tracker saw during one call (cache hits count zero)."""

    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None
    #: (input, output) tokens of each LM call, in order: a predictor call makes two when
    #: the ChatAdapter falls back to the JSONAdapter.
    calls: list[tuple[int, int]] = field(default_factory=list)
    #: The last call's reply stopped at the reply cap (see ``cut_replies``).
    truncated: bool = False

    def split(self) -> tuple[list[Measured], Measured]:
        """Every call but the last as its own ``Measured``, and the last: for clients that
        count each LM call in the run's ledger, not each predictor call."""
        if len(self.calls) < 2:
            return [], self
        *earlier, (i, o) = self.calls
        head = [Measured(a, b, self.model, [(a, b)]) for a, b in earlier]
        return head, Measured(i, o, self.model, [(i, o)], self.truncated)


class UnparsedReply(Exception):
    """The LM answered but DSPy's adapter could not parse the reply.

    The call's tokens were spent all the same: ``measured`` carries them, so the client
    can count them in the run's usage before it reports the failure.
    """

    def __init__(self, error: AdapterParseError, measured: Measured) -> None:
        super().__init__(str(error))
        self.error = error
        self.measured = measured


def _tally(tracker: UsageTracker) -> Measured:
    m = Measured()
    for model, entries in tracker.usage_data.items():
        m.model = m.model or model
        for entry in entries:
            i = int(entry.get("prompt_tokens") or entry.get("input_tokens") or 0)
            o = int(entry.get("completion_tokens") or entry.get("output_tokens") or 0)
            m.input_tokens += i
            m.output_tokens += o
            m.calls.append((i, o))
    return m


class _InFlight(BaseCallback):  # type: ignore[misc]  # dspy ships no types
    """The LM calls started and not completed inside one ``measured`` call (still running,
    or ended by an error or a cancellation), by the size of what they sent: what an
    abandoned call cost the server is estimated from it."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        messages = inputs.get("messages") or [{"content": str(inputs.get("prompt") or "")}]
        self.sent[call_id] = sent_chars(messages)

    def on_lm_end(
        self, call_id: str, outputs: dict[str, Any] | None, exception: Exception | None = None
    ) -> None:
        if exception is None:  # a failed call keeps its entry: its prompt was sent
            self.sent.pop(call_id, None)


def _spent(m: Measured, inflight: _InFlight, lm: Any) -> LMResponse:
    """What a failed or abandoned predictor call cost: the calls DSPy finished, plus an
    estimate of the prompts of those it did not (their servers read them all)."""
    pending = estimate_tokens(sum(inflight.sent.values()))
    return LMResponse(
        text="",
        model=lm_name(lm) if lm is not None else str(m.model or "dspy"),
        input_tokens=m.input_tokens + pending,
        output_tokens=m.output_tokens,
        usage_estimated=bool(inflight.sent),
    )


async def measured(call: Callable[[], Awaitable[T]], lm: Any = None) -> tuple[T, Measured]:
    """Await ``call()`` under a nested usage tracker; returns its result and its tokens,
    and whether the last reply was cut at the reply cap of ``lm`` or of its server.

    A reply the adapter cannot parse raises ``UnparsedReply`` with the tokens of every LM
    call made before the failure (the adapter's JSON fallback included). Any other
    failure, a cancellation (run timeout, budget stop) included, carries what the call
    cost on the exception (``partial_usage``), as the engine's own clients do: the
    engine counts it, estimated where DSPy had no usage for it.
    """
    mark = cut_replies.history_mark()
    inflight = _InFlight()

    def tally(tracker: UsageTracker) -> Measured:
        m = _tally(tracker)
        entries = cut_replies.entries_since(mark)
        m.truncated = cut_replies.was_cut(m.calls, entries, cut_replies.reply_cap(lm))
        return m

    callbacks = [*(dspy.settings.get("callbacks") or []), inflight]
    with dspy.context(callbacks=callbacks), track_usage() as tracker:
        try:
            result = await call()
        except AdapterParseError as e:
            raise UnparsedReply(e, tally(tracker)) from e
        except BaseException as e:
            attach_partial_usage(e, _spent(_tally(tracker), inflight, lm))
            raise
    return result, tally(tracker)


def lm_name(lm: Any) -> str:
    return str(getattr(lm, "model", None) or type(lm).__name__)


def measured_response(text: str, model: str, m: Measured, pricing: Any = None) -> LMResponse:
    """The engine's view of one DSPy LM call; the cost comes from the engine's price table
    (DSPy usage entries carry no price)."""
    bare = model.split("/", 1)[-1]
    cost = compute_cost(price_for(bare, pricing), m.input_tokens, m.output_tokens)
    return LMResponse(
        text=text,
        model=model,
        input_tokens=m.input_tokens,
        output_tokens=m.output_tokens,
        cost=cost,
        truncated=m.truncated,
    )


def resolve_lm(lm: Any) -> Any:
    """``lm`` itself, else the LM DSPy is configured with right now."""
    target = lm if lm is not None else dspy.settings.lm
    if target is None:
        raise RuntimeError(
            "No DSPy LM is configured: call dspy.configure(lm=dspy.LM(...)), wrap the call in "
            "dspy.context(lm=...), or pass sub_lm=... to RLMModule."
        )
    return target


async def call_lm_messages(lm: Any, messages: list[Message]) -> str:
    """One chat completion through a DSPy LM: lm15 requests for ``dspy.LM``, else legacy."""
    if isinstance(lm, dspy.LM):
        from dspy.lm15 import Message as LMMessage
        from dspy.lm15 import Request

        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system") or None
        turns = [
            LMMessage.assistant(m["content"])
            if m["role"] == "assistant"
            else LMMessage.user(m["content"])
            for m in messages
            if m["role"] != "system"
        ]
        response = await lm.acall(Request(model=lm.model, messages=tuple(turns), system=system))
        return response.text or ""
    with warnings.catch_warnings():  # custom BaseLMs only speak the legacy messages= form
        warnings.simplefilter("ignore", DeprecationWarning)
        outputs = await lm.acall(messages=messages)
    first = outputs[0] if outputs else ""
    return first.get("text", "") if isinstance(first, dict) else str(first)


class DSPyLMClient(LMClient):
    """Engine client over a DSPy LM (``None``: ``dspy.settings.lm`` at call time).

    Usable on its own, e.g. ``RLM(backend=DSPyLMClient(dspy.LM(...)))``; DSPy's history,
    cache and usage tracking see the calls.
    """

    def __init__(
        self,
        lm: Any = None,
        *,
        snapshot: Any = None,
        pricing: Any = None,
        context_chars: int = 100_000,
    ) -> None:
        self.lm = lm
        self.snapshot = snapshot if snapshot is not None else settings_snapshot()
        self.pricing = pricing
        self.context_chars = context_chars
        self.model_name = lm_name(lm) if lm is not None else "dspy.settings.lm"

    async def acomplete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        with dspy_scope(self.snapshot):
            lm = resolve_lm(self.lm)
            if model is not None and model != lm_name(lm):
                raise ValueError(
                    f"model={model!r} is not available here: calls go to the DSPy LM "
                    f"{lm_name(lm)!r}. Drop the model argument or configure another LM."
                )
            text, m = await measured(lambda: call_lm_messages(lm, messages), lm)
        name = lm_name(lm)
        return measured_response(text, name, m, self.pricing)

    def describe(self) -> dict[str, Any]:
        return {"client": "dspy", "model": self.model_name}
