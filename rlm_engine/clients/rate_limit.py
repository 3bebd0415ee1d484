"""One LM rate limit shared by every completion of a batch: requests/min and tokens/min
per model.

Providers limit per account, not per process, so the limit must be one schedule that every
caller reserves from: in one process a :class:`LocalRateLimiter`, on a Ray cluster an actor
with the same interface (``rlm_engine.batch.ray_executor``). Both hold a
:class:`RateSchedule`, so they behave identically.

The schedule is a GCRA ("virtual scheduling"): each model has a theoretical next start
time per limit; a request is given the later of now and those times, and pushes them by
``60 / limit`` seconds per request and per token. Requests are therefore spaced evenly at
the limit (never a burst of a minute's worth at once, which a provider's per-second
enforcement would refuse) and a caller learns its wait in one round trip, with no
polling. Tokens are reserved before a call as an estimate (4 characters per token of the
prompt) and settled with the usage the server reported afterwards.

:class:`RateLimitedClient` applies a limiter around any :class:`LMClient`. A 429 that
survives the client's own retries (the SDKs retry 429s, honouring ``Retry-After``) pushes
that model's schedule back for every caller sharing it, then is raised as before.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from rlm_engine.clients.base import LMClient
from rlm_engine.types import LMResponse, Message

#: Characters per token of the reservation estimate (settled with the real count after).
CHARS_PER_TOKEN = 4
#: Seconds every caller of a model waits after a 429 that gave no Retry-After.
DEFAULT_BACKOFF = 1.0
#: The key of :data:`RateLimits` that applies to models not named.
ANY_MODEL = "*"


@dataclass(frozen=True)
class RateLimit:
    """Requests and tokens (prompt + reply) per minute for one model; None: unlimited."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise ValueError(f"{name} must be > 0 (or None for no limit), got {value!r}")

    @property
    def unlimited(self) -> bool:
        return self.requests_per_minute is None and self.tokens_per_minute is None


#: Limits by model name; ``"*"`` applies to every model not named.
RateLimits = Mapping[str, RateLimit]


class RateSchedule:
    """The shared schedule (not thread-safe: its owners lock or are single-threaded)."""

    def __init__(self, limits: RateLimits) -> None:
        self.limits = dict(limits)
        self._next_request: dict[str, float] = {}
        self._next_token: dict[str, float] = {}

    def limit_for(self, model: str) -> RateLimit | None:
        found = self.limits.get(model) or self.limits.get(ANY_MODEL)
        return None if found is None or found.unlimited else found

    def reserve(self, model: str, tokens: int, now: float) -> float:
        """Reserve one request of ``tokens`` estimated tokens; seconds to wait before it."""
        limit = self.limit_for(model)
        if limit is None:
            return 0.0
        start = max(now, self._next_request.get(model, now), self._next_token.get(model, now))
        if limit.requests_per_minute is not None:
            self._next_request[model] = start + 60.0 / limit.requests_per_minute
        if limit.tokens_per_minute is not None:
            self._next_token[model] = start + max(tokens, 0) * 60.0 / limit.tokens_per_minute
        return start - now

    def settle(self, model: str, extra_tokens: int) -> None:
        """Correct a reservation by the tokens the call really used beyond (or below) it."""
        limit = self.limit_for(model)
        if limit is None or limit.tokens_per_minute is None or model not in self._next_token:
            return
        self._next_token[model] += extra_tokens * 60.0 / limit.tokens_per_minute

    def back_off(self, model: str, seconds: float, now: float) -> None:
        """No request of ``model`` starts within ``seconds`` (after a provider's 429)."""
        until = now + max(seconds, 0.0)
        self._next_request[model] = max(self._next_request.get(model, now), until)
        self._next_token[model] = max(self._next_token.get(model, now), until)


class RateLimiter(Protocol):
    """What :class:`RateLimitedClient` needs: a local limiter and the Ray actor's proxy."""

    async def acquire(self, model: str, tokens: int) -> None:
        """Wait until a request of ``model`` with ``tokens`` estimated tokens may start."""

    async def settle(self, model: str, extra_tokens: int) -> None:
        """Count the tokens a call used beyond (negative: below) its reservation."""

    async def back_off(self, model: str, seconds: float) -> None:
        """Hold every caller of ``model`` for ``seconds`` (a 429 from the provider)."""


class LocalRateLimiter:
    """A :class:`RateLimiter` for one process (any number of event loops and threads)."""

    def __init__(self, limits: RateLimits) -> None:
        self.schedule = RateSchedule(limits)
        self._lock = threading.Lock()

    async def acquire(self, model: str, tokens: int) -> None:
        with self._lock:
            wait = self.schedule.reserve(model, tokens, time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)

    async def settle(self, model: str, extra_tokens: int) -> None:
        with self._lock:
            self.schedule.settle(model, extra_tokens)

    async def back_off(self, model: str, seconds: float) -> None:
        with self._lock:
            self.schedule.back_off(model, seconds, time.monotonic())


def estimate_tokens(messages: list[Message]) -> int:
    """Prompt tokens of ``messages`` as reserved before a call (4 characters a token)."""
    chars = 0
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(str(p.get("text", ""))) for p in content if isinstance(p, dict))
    return max(1, chars // CHARS_PER_TOKEN)


def retry_after(error: BaseException) -> float | None:
    """Seconds to hold a model after ``error`` when it is a provider's 429, else None."""
    if getattr(error, "status_code", None) != 429:
        return None
    response = getattr(error, "response", None)
    headers: Any = getattr(response, "headers", None) or {}
    try:
        return max(float(headers.get("retry-after")), 0.0)
    except (TypeError, ValueError):
        return DEFAULT_BACKOFF


class RateLimitedClient(LMClient):
    """``inner`` with every request first reserved from ``limiter``.

    Model name, window size and prompt-building flag are the inner client's, so the
    engine sees the same client. ``close_inner=False`` leaves closing the inner client to
    its owner.
    """

    def __init__(self, inner: LMClient, limiter: RateLimiter, *, close_inner: bool = True):
        self.inner = inner
        self.limiter = limiter
        self.close_inner = close_inner

    def __getattr__(self, name: str) -> Any:
        """Anything else the engine asks a client (server facts, windows) is the inner's."""
        if name == "inner":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def model_name(self) -> str:  # type: ignore[override]  # "auto" resolves late
        return self.inner.model_name

    @property
    def context_chars(self) -> int:  # type: ignore[override]
        return self.inner.context_chars

    @property
    def builds_own_prompt(self) -> bool:  # type: ignore[override]
        return self.inner.builds_own_prompt

    async def acomplete(
        self,
        messages: list[Message],
        *,
        model: str | None = None,
        timeout: float | None = None,
    ) -> LMResponse:
        name = model or self.inner.model_name
        reserved = estimate_tokens(messages)
        await self.limiter.acquire(name, reserved)
        try:
            resp = await self.inner.acomplete(messages, model=model, timeout=timeout)
        except Exception as e:
            from rlm_engine.clients.streaming import partial_usage

            spent = partial_usage(e)
            if spent is not None:
                await self.limiter.settle(name, spent.input_tokens + spent.output_tokens - reserved)
            hold = retry_after(e)
            if hold is not None:
                await self.limiter.back_off(name, hold)
            raise
        await self.limiter.settle(name, resp.input_tokens + resp.output_tokens - reserved)
        return resp

    async def aclose(self) -> None:
        if self.close_inner:
            await self.inner.aclose()

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "rate_limited": True}


def rate_limits(
    requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
    per_model: RateLimits | None = None,
) -> dict[str, RateLimit]:
    """Limits from the batch options: every model's, then per-model overrides."""
    limits: dict[str, RateLimit] = {}
    if requests_per_minute is not None or tokens_per_minute is not None:
        limits[ANY_MODEL] = RateLimit(requests_per_minute, tokens_per_minute)
    limits.update(per_model or {})
    return limits


__all__ = [
    "ANY_MODEL",
    "LocalRateLimiter",
    "RateLimit",
    "RateLimitedClient",
    "RateLimiter",
    "RateLimits",
    "RateSchedule",
    "estimate_tokens",
    "rate_limits",
    "retry_after",
]
