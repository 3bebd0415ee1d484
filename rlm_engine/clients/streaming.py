"""What the streaming clients share: usage estimates and the usage of abandoned calls.

The OpenAI and Anthropic clients send every request as a stream, because closing a
streamed request is what makes vLLM, llama.cpp and the cloud APIs stop generating it: a
timeout, a cancellation or a budget stop then frees the server instead of leaving it busy
with a reply nobody reads. A stream may carry no usage (a server that ignores
``stream_options``), and an abandoned one never reaches its usage chunk; the tokens are
then estimated at 4 characters per token of what was sent and received, and the
:class:`~rlm_engine.types.LMResponse` says so (``usage_estimated``).

A call that fails after the server started on it (cancelled, timed out, a broken stream)
carries that estimate on the exception as ``partial_usage``; :func:`partial_usage` finds
it, through the exceptions it caused too, so the engine can count every call it made.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from rlm_engine.types import LMResponse, Message

#: Characters per token of the estimate (the usual rule of thumb for English and code).
CHARS_PER_TOKEN = 4


def estimate_tokens(chars: int) -> int:
    """Tokens for ``chars`` characters (rounded up: an estimate errs on the budget's side)."""
    return -(-max(0, chars) // CHARS_PER_TOKEN)


def sent_chars(messages: Sequence[Message]) -> int:
    """Characters of a request's messages (text parts of structured content included)."""
    total = 0
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            total += len(content)
        elif content is not None:
            total += len(json.dumps(content))
    return total


def is_event_stream(headers: Mapping[str, str]) -> bool:
    """Whether a response is a stream: a server that ignores ``stream`` answers with JSON."""
    return "text/event-stream" in headers.get("content-type", "")


def attach_partial_usage(error: BaseException, usage: LMResponse) -> None:
    """Record on ``error`` the usage of the call it ended (first one attached wins)."""
    if getattr(error, "partial_usage", None) is None:
        with contextlib.suppress(AttributeError):  # a type that refuses attributes
            error.partial_usage = usage  # type: ignore[attr-defined]


class Accumulator(Protocol):
    """A client's reply under construction: takes the stream's chunks or events."""

    def add(self, item: Any) -> None: ...


async def adrain(
    stream: Any,
    reply: Accumulator,
    finish: Callable[[], LMResponse],
    whole: Callable[[bytes], LMResponse],
) -> LMResponse:
    """Read a streamed reply into ``reply`` (or the plain JSON body of a server that
    ignored ``stream``: ``whole``), closing the stream whatever happens; a failure
    carries the usage so far (``finish()``) on its exception."""
    try:
        if not is_event_stream(stream.response.headers):
            return whole(await stream.response.aread())
        async for item in stream:
            reply.add(item)
    except BaseException as e:
        attach_partial_usage(e, finish())
        raise
    finally:
        await stream.close()
    return finish()


def drain(
    stream: Any,
    reply: Accumulator,
    finish: Callable[[], LMResponse],
    whole: Callable[[bytes], LMResponse],
) -> LMResponse:
    """:func:`adrain` for a sync stream."""
    try:
        if not is_event_stream(stream.response.headers):
            return whole(stream.response.read())
        for item in stream:
            reply.add(item)
    except BaseException as e:
        attach_partial_usage(e, finish())
        raise
    finally:
        stream.close()
    return finish()


def partial_usage(error: BaseException | None) -> LMResponse | None:
    """The usage a failed call recorded, on ``error`` or on an exception that caused it.

    The engine should add it to the run's usage (it is marked ``usage_estimated`` where
    the server did not report it): the server worked on the call even though it failed.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        found = getattr(error, "partial_usage", None)
        if isinstance(found, LMResponse):
            return found
        error = error.__cause__ or error.__context__
    return None


__all__ = [
    "CHARS_PER_TOKEN",
    "attach_partial_usage",
    "estimate_tokens",
    "is_event_stream",
    "partial_usage",
    "sent_chars",
]
