"""The LM client protocol: one small async interface every backend implements.

A backend is one file: subclass :class:`LMClient`, implement ``acomplete`` and register
it in ``rlm_engine.clients.BACKENDS``. Retries for timeouts, 429 and 5xx belong to the
client (the official SDKs already do them with backoff), and so does the request's total
deadline (``rlm_engine.clients.deadline``): ``timeout`` bounds one call, retries included.
Failures name the server they came from, so an error points at what to fix.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import ModuleType
from typing import Any, NoReturn, TypeAlias

from rlm_engine.types import LMResponse, Message

#: USD per 1M tokens: ``(input, output)`` or ``{"input": ..., "output": ...}``.
Pricing: TypeAlias = Sequence[float] | dict[str, float]

# USD per 1M tokens (input, output), list prices of each provider's common models, by
# model-name prefix (the longest wins; a provider prefix such as "openai/" or "gemini/"
# is ignored). Users can pass backend_kwargs={"pricing": (in, out)}; a cost the provider
# reports (OpenRouter's usage.cost, LiteLLM's) wins over this table. Azure, OpenRouter,
# Portkey and LiteLLM serve these same models, so their names find these prices.
KNOWN_PRICES: dict[str, tuple[float, float]] = {
    # OpenAI (also Azure OpenAI, whose replies name the model)
    "gpt-5": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.4),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1-nano": (0.1, 0.4),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "o3": (2.0, 8.0),
    "o4-mini": (1.1, 4.4),
    # Anthropic
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
    # Google Gemini (prompts up to 200k tokens for the pro models)
    "gemini-2.5-pro": (1.25, 10.0),
    "gemini-2.5-flash": (0.3, 2.5),
    "gemini-2.5-flash-lite": (0.1, 0.4),
    "gemini-2.0-flash": (0.1, 0.4),
    "gemini-2.0-flash-lite": (0.075, 0.3),
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
    """Per-1M-token prices: explicit ``pricing`` wins, else the longest known prefix of the
    model's name without its provider prefix (``openai/gpt-5-mini``, ``models/gemini-...``)."""
    if pricing is not None:
        if isinstance(pricing, dict):
            return float(pricing["input"]), float(pricing["output"])
        inp, out = pricing
        return float(inp), float(out)
    name = model.rsplit("/", 1)[-1].lower()
    best = max((p for p in KNOWN_PRICES if name.startswith(p)), key=len, default=None)
    return KNOWN_PRICES[best] if best else None


class ReplyNotJSONError(ValueError):
    """The server answered, but with a body that does not parse as JSON."""

    def __init__(self, where: str, tries: int, cause: ValueError) -> None:
        excerpt = _body_excerpt(cause)
        super().__init__(
            f"the server at {where} answered with a body that is not JSON"
            + (f" ({tries} tries)" if tries > 1 else "")
            + (f": {excerpt}" if excerpt else "")
            + "; check that the URL is the API's base URL (for OpenAI-compatible servers "
            "it usually ends in /v1)"
        )
        self.where = where


def _body_excerpt(cause: ValueError, limit: int = 80) -> str:
    """The start of the body a JSON decoder failed on, when the error carries it."""
    body: object = getattr(cause, "doc", None)  # json.JSONDecodeError
    if body is None:
        body = getattr(cause, "object", None)  # UnicodeDecodeError
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if not isinstance(body, str) or not body.strip():
        return ""
    text = " ".join(body.split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


def explained(
    e: Exception,
    where: str,
    bound: float | None,
    *,
    sdk: ModuleType,
    tries: int = 1,
) -> Exception | None:
    """An SDK's error as a user can act on it, or None when ``e`` already says it.

    ``sdk`` is the ``openai`` or ``anthropic`` module (their error classes share a shape):
    its timeouts become :class:`RequestTimeoutError` with the bound, connection errors
    name the server's URL, and a codec or JSON error on the body becomes
    :class:`ReplyNotJSONError` instead of ``UnicodeDecodeError: 'utf-16-be' ...``.
    """
    from rlm_engine.clients.deadline import RequestTimeoutError

    if isinstance(e, sdk.APITimeoutError):
        return RequestTimeoutError(bound, f"the server at {where}")
    if isinstance(e.__cause__, RequestTimeoutError):  # anthropic wraps what its hooks raise
        return RequestTimeoutError(e.__cause__.seconds, e.__cause__.where)
    if isinstance(e, sdk.APIConnectionError):
        cause = e.__cause__
        detail = f": {type(cause).__name__}: {cause}" if cause and str(cause) else ""
        error: Exception = sdk.APIConnectionError(
            message=f"Connection error: cannot reach the server at {where}{detail}",
            request=e.request,
        )
        return error
    if isinstance(e, json.JSONDecodeError | UnicodeDecodeError):
        return ReplyNotJSONError(where, tries, e)
    return None


def raise_explained(
    e: Exception, where: str, bound: float | None, *, sdk: ModuleType, tries: int = 1
) -> NoReturn:
    """Raise :func:`explained` ``e`` (or ``e`` itself); call it inside ``except``."""
    better = explained(e, where, bound, sdk=sdk, tries=tries)
    if better is None:
        raise e
    raise better from e


def alternate_roles(messages: Sequence[Message]) -> list[Message]:
    """``messages`` with consecutive messages of one role merged into one.

    Many open models' chat templates (vLLM, llama.cpp) refuse ``user, user`` with
    "Conversation roles must alternate", and Anthropic refuses it too; merging (texts joined
    by a blank line) keeps every word and satisfies them all. Only plain role/content
    messages merge: a tool result or a message with tool calls keeps its own turn.
    """
    out: list[Message] = []
    for m in messages:
        prev = out[-1] if out else None
        if (
            prev is not None
            and prev.get("role") == m.get("role")
            and set(prev) <= {"role", "content"}
            and set(m) <= {"role", "content"}
        ):
            out[-1] = {"role": m["role"], "content": _joined(prev.get("content"), m.get("content"))}
        else:
            out.append(m)
    return out


def _joined(first: Any, second: Any) -> Any:
    """Two message contents as one: text joined by a blank line, else content parts."""
    if isinstance(first, str | None) and isinstance(second, str | None):
        return "\n\n".join(part for part in (first, second) if part)

    def parts(content: Any) -> list[Any]:
        if isinstance(content, list):
            return list(content)
        return [{"type": "text", "text": content}] if content else []

    return parts(first) + parts(second)


def system_as_first_user(messages: list[Message]) -> list[Message]:
    """``messages`` with the leading system (or developer) messages moved into the first
    user turn, for chat templates that have no system role (they drop or refuse it)."""
    head = 0
    while head < len(messages) and messages[head].get("role") in ("system", "developer"):
        head += 1
    if head == 0:
        return messages
    system = "\n\n".join(str(m.get("content") or "") for m in messages[:head])
    rest = list(messages[head:])
    if rest and rest[0].get("role") == "user" and isinstance(rest[0].get("content"), str):
        rest[0] = {**rest[0], "content": f"{system}\n\n{rest[0]['content']}"}
    else:
        rest.insert(0, {"role": "user", "content": system})
    return rest


#: What a client translates with :func:`explained` (the SDK's errors and bodies not JSON).
SDK_FAILURES = (json.JSONDecodeError, UnicodeDecodeError)


#: Prompt-cache prices as multiples of the input price, by model prefix: (read, write).
#: OpenAI bills cached input at 10% (gpt-5 family), 25% (gpt-4.1, o3, o4-mini) or 50%
#: (gpt-4o) and writes at the normal rate; Anthropic reads at 10% and writes (5-minute
#: cache) at 125%. Unknown models: no discount, the safe side of a budget.
CACHE_RATES: dict[str, tuple[float, float]] = {
    "gpt-5": (0.1, 1.0),
    "gpt-4.1": (0.25, 1.0),
    "o3": (0.25, 1.0),
    "o4-mini": (0.25, 1.0),
    "gpt-4o": (0.5, 1.0),
    "claude": (0.1, 1.25),
    "gemini-2.5": (0.1, 1.0),  # implicit caching: cached input at 10% (2.5), 25% (2.0)
    "gemini": (0.25, 1.0),
}


def cache_rates_for(model: str) -> tuple[float, float]:
    """``(read, write)`` multipliers of the input price for ``model``'s prompt cache."""
    name = model.rsplit("/", 1)[-1]
    best = max((p for p in CACHE_RATES if name.startswith(p)), key=len, default=None)
    return CACHE_RATES[best] if best else (1.0, 1.0)


def compute_cost(
    prices: tuple[float, float] | None,
    inp: int,
    out: int,
    cached: int = 0,
    written: int = 0,
    rates: tuple[float, float] = (1.0, 1.0),
) -> float | None:
    """USD for one call; ``cached``/``written`` of the ``inp`` tokens are priced at the
    prompt cache's ``rates`` (multiples of the input price)."""
    if prices is None:
        return None
    plain = max(0, inp - cached - written)
    billed_input = plain + cached * rates[0] + written * rates[1]
    return (billed_input * prices[0] + out * prices[1]) / 1_000_000


class LMClient(ABC):
    """Chat-completion client. ``model_name`` is the default model of this client."""

    model_name: str = "unknown"
    #: Characters the model can read in one prompt; tells the root LM how big chunks may be.
    context_chars: int = 400_000
    #: True for a root client that builds its own prompt from the session instead of
    #: sending the engine's message history (DSPy's predictor root): window compaction
    #: then leaves it alone, since the history is not what it sends.
    builds_own_prompt: bool = False

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
