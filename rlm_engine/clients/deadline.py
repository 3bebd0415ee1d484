"""One bound for one LM request: a total deadline, retries and slow bodies included.

An SDK's ``timeout`` is an HTTP timeout per read, per attempt: a server that sends one byte
every 0.1 s restarts it forever, and a silent one holds each of the retries for the whole
timeout. So the clients give every request a deadline of its own:

- async calls (everything the engine makes) run under :func:`within_deadline`, which
  cancels the request, its retries and their back-off at the deadline exactly;
- sync calls (``LMClient.complete``) set the deadline with :func:`sync_deadline`, and
  :func:`enforce_sync_deadlines` installs event hooks on the SDK's HTTP client that
  cap each attempt's connect/read/write timeouts to the time left, abort a body still
  arriving when it passes, and refuse to start an attempt after it. A sync call so ends
  at the deadline plus at most the SDK's retry back-off (a few seconds): the openai SDK
  does not retry the :class:`RequestTimeoutError` the hooks raise, the anthropic SDK
  retries it (each retry refused at once), and a silent server trips the capped read
  timeout, which both retry once after a back-off before the next attempt is refused.

Either way the caller gets :class:`RequestTimeoutError`, naming the server and the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")


def _partial_usage(error: BaseException) -> Any:
    from rlm_engine.clients.streaming import partial_usage

    return partial_usage(error)


class RequestTimeoutError(TimeoutError):
    """An LM request (retries included) did not complete within its ``timeout``.

    ``where`` names what did not answer: ``"the server at URL"``, or a model.
    """

    def __init__(self, seconds: float | None, where: str) -> None:
        bound = "its HTTP timeout" if seconds is None else f"the request timeout of {seconds:g} s"
        super().__init__(
            f"no complete reply from {where} within {bound} (retries included); raise "
            "timeout= (--timeout) if replies are legitimately this slow"
        )
        self.seconds = seconds
        self.where = where
        #: The usage of the abandoned request (an ``LMResponse``), when its client knew it.
        self.partial_usage: Any = None


@dataclass(frozen=True)
class _Deadline:
    """The sync request running in this context: when it must end, its bound, its server."""

    at: float  # time.monotonic()
    seconds: float
    where: str

    def left(self) -> float:
        return self.at - time.monotonic()

    def error(self) -> RequestTimeoutError:
        return RequestTimeoutError(self.seconds, self.where)


_deadline: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar(
    "rlm_request_deadline", default=None
)


async def within_deadline(request: Awaitable[T], seconds: float | None, where: str) -> T:
    """Await ``request``; past ``seconds`` it is cancelled and RequestTimeoutError raised."""
    if seconds is None:
        return await request
    bound = asyncio.timeout(seconds)
    try:
        async with bound:
            return await request
    except TimeoutError as e:
        if bound.expired():
            error = RequestTimeoutError(seconds, where)
            # The abandoned request's usage (the streaming clients attach it to the
            # cancellation): the server worked on it, so the run must still count it.
            error.partial_usage = _partial_usage(e)
            raise error from None
        raise


@contextlib.contextmanager
def sync_deadline(seconds: float | None, where: str) -> Iterator[None]:
    """The deadline of the sync requests made inside the block (see the module docstring)."""
    bound = None if seconds is None else _Deadline(time.monotonic() + seconds, seconds, where)
    token = _deadline.set(bound)
    try:
        yield
    finally:
        _deadline.reset(token)


def _http_library(client: Any) -> ModuleType:
    """The HTTP library of an SDK client: ``httpx2`` (current SDKs) or ``httpx`` (older)."""
    for name in ("httpx2", "httpx"):
        lib = sys.modules.get(name)
        if lib is not None and isinstance(client, lib.Client):
            return lib
    raise TypeError(f"expected an httpx2.Client or httpx.Client, got {type(client).__name__}")


@functools.cache
def _hooks(lib: ModuleType) -> tuple[Callable[[Any], None], Callable[[Any], None]]:
    """The request and response hooks for one HTTP library (its exception and stream types)."""

    class DeadlineStream(lib.SyncByteStream):  # type: ignore[name-defined,misc]
        """A response body that stops with RequestTimeoutError once the deadline has passed."""

        def __init__(self, inner: Any, deadline: _Deadline) -> None:
            self._inner, self._deadline = inner, deadline

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self._inner:
                if self._deadline.left() <= 0:
                    raise self._deadline.error()
                yield chunk

        def close(self) -> None:
            self._inner.close()

    def cap_attempt(request: Any) -> None:
        """No attempt may wait past the deadline, and none starts after it."""
        deadline = _deadline.get()
        if deadline is None:
            return
        left = deadline.left()
        if left <= 0:
            raise deadline.error()
        timeouts = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {
            phase: left if timeouts.get(phase) is None else min(timeouts[phase], left)
            for phase in ("connect", "read", "write", "pool")
        }

    def bound_body(response: Any) -> None:
        """The body must arrive before the deadline too (a trickle would not)."""
        deadline = _deadline.get()
        if deadline is not None and isinstance(response.stream, lib.SyncByteStream):
            response.stream = DeadlineStream(response.stream, deadline)

    return cap_attempt, bound_body


def enforce_sync_deadlines(client: T) -> T:
    """Install the deadline hooks on a sync SDK ``client`` (kept with any hooks it has)."""
    cap_attempt, bound_body = _hooks(_http_library(client))
    hooks = client.event_hooks  # type: ignore[attr-defined]
    client.event_hooks = {  # type: ignore[attr-defined]
        "request": [*hooks.get("request", []), cap_attempt],
        "response": [*hooks.get("response", []), bound_body],
    }
    return client


__all__ = [
    "RequestTimeoutError",
    "enforce_sync_deadlines",
    "sync_deadline",
    "within_deadline",
]
