"""The LM client protocol: one small async interface every backend implements.

A backend is one file: subclass :class:`LMClient`, implement ``acomplete`` and register
it in ``rlm_engine.clients.BACKENDS``. Retries for timeouts, 429 and 5xx belong to the
client (the official SDKs already do them with backoff).
"""

from __future__ import annotations

import functools
import os
import ssl
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, TypeAlias

from rlm_engine.types import LMResponse, Message

#: USD per 1M tokens: ``(input, output)`` or ``{"input": ..., "output": ...}``.
Pricing: TypeAlias = Sequence[float] | dict[str, float]

# USD per 1M tokens (input, output); users can pass backend_kwargs={"pricing": (in, out)}.
KNOWN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-5": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.4),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-haiku-4-5": (1.0, 5.0),
}


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for every SDK client of the process.

    Building one (loading the CA bundle) costs ~20 ms, which was most of the start-up of a
    short completion; an ``SSLContext`` is safe to share between client connections. Honours
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` like the SDKs' own default does.
    """
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def price_for(model: str, pricing: Pricing | None = None) -> tuple[float, float] | None:
    """Per-1M-token prices: explicit ``pricing`` wins, else the longest known prefix."""
    if pricing is not None:
        if isinstance(pricing, dict):
            return float(pricing["input"]), float(pricing["output"])
        inp, out = pricing
        return float(inp), float(out)
    best = None
    for name, p in KNOWN_PRICES.items():
        if model.startswith(name) and (best is None or len(name) > len(best[0])):
            best = (name, p)
    return best[1] if best else None


def compute_cost(prices: tuple[float, float] | None, inp: int, out: int) -> float | None:
    if prices is None:
        return None
    return (inp * prices[0] + out * prices[1]) / 1_000_000


class LMClient(ABC):
    """Chat-completion client. ``model_name`` is the default model of this client."""

    model_name: str = "unknown"
    #: Characters the model can read in one prompt; tells the root LM how big chunks may be.
    context_chars: int = 400_000

    @abstractmethod
    async def acomplete(
        self,
        messages: list[Message],
        *,
        model: str | None = None,
        timeout: float | None = None,
    ) -> LMResponse:
        """One chat completion. Raises on failure after the client's own retries."""

    def complete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        """Sync form; works inside a running event loop too."""
        from rlm_engine.aio import run_sync

        return run_sync(self.acomplete(messages, model=model, timeout=timeout))

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def describe(self) -> dict[str, Any]:
        """Loggable description: never includes keys or other secrets."""
        return {"client": type(self).__name__, "model": self.model_name}
