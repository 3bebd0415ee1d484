"""Anthropic Messages API client on the anthropic SDK (which retries 429/5xx itself).

``timeout`` is a total deadline per call, retries and a slowly arriving body included
(``rlm_engine.clients.deadline``); errors name the server's URL.

Every request is a stream (``rlm_engine.clients.streaming``): a call abandoned at its
deadline, cancelled or stopped by a budget closes its stream, and the API stops
generating it. Usage comes from ``message_start`` (input, cache) and ``message_delta``
(output); what an abandoned stream never reported is estimated and marked so.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import TYPE_CHECKING, Any, NoReturn, NotRequired, TypedDict

import anthropic
from anthropic.types import Message as AnthropicMessage

from rlm_engine.clients.base import (
    SDK_FAILURES,
    LMClient,
    Pricing,
    alternate_roles,
    cache_rates_for,
    compute_cost,
    price_for,
    raise_explained,
    shared_ssl_context,
    system_as_first_user,
)
from rlm_engine.clients.deadline import enforce_sync_deadlines, sync_deadline, within_deadline
from rlm_engine.clients.per_loop import PerLoop
from rlm_engine.clients.streaming import (
    adrain,
    attach_partial_usage,
    drain,
    estimate_tokens,
    sent_chars,
)
from rlm_engine.config import DEFAULT_REQUEST_TIMEOUT
from rlm_engine.types import LMResponse, Message
from rlm_engine.windows import window_chars

if TYPE_CHECKING:
    import httpx2  # the SDK's HTTP library


def split_system(messages: list[Message]) -> tuple[str, list[Message]]:
    """Anthropic takes the system prompt as a parameter and wants alternating turns."""
    system = "\n\n".join(str(m["content"]) for m in messages if m["role"] == "system")
    turns = [
        {"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"
    ]
    return system, alternate_roles(turns)


class _Reply:
    """A streamed message as it arrives: text, stop reason, model and reported usage."""

    def __init__(self, model: str, prompt_chars: int) -> None:
        self.model = model
        self.prompt_chars = prompt_chars
        self.pieces: list[str] = []
        self.stop_reason: str | None = None
        self.usage: dict[str, int] = {}  # what message_start / message_delta reported
        self.complete = False  # message_delta (the final usage) arrived

    def add(self, event: Any) -> None:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            self.model = event.message.model or self.model
            self._usage(event.message.usage)
        elif kind == "content_block_delta" and getattr(event.delta, "type", "") == "text_delta":
            self.pieces.append(event.delta.text)
        elif kind == "message_delta":
            self.stop_reason = event.delta.stop_reason or self.stop_reason
            self._usage(event.usage)
            self.complete = True

    def add_message(self, msg: AnthropicMessage) -> None:
        """A whole message (a server that ignored ``stream``)."""
        self.model = msg.model or self.model
        self.pieces = [getattr(b, "text", "") for b in msg.content if b.type == "text"]
        self.stop_reason = msg.stop_reason
        self._usage(msg.usage)
        self.complete = True

    def _usage(self, usage: Any) -> None:
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ):
            value = getattr(usage, name, None)
            if isinstance(value, int):
                self.usage[name] = value


def cache_breakpoints(system: str, turns: list[Message]) -> tuple[list[dict[str, Any]], list[Any]]:
    """``system`` and ``turns`` with ``cache_control`` on the system prompt and on the last
    message (2 of Anthropic's 4 breakpoints): the next call of an append-only history
    reads everything up to this call's last message from the cache."""
    mark = {"type": "ephemeral"}
    system_blocks = [{"type": "text", "text": system, "cache_control": mark}]
    out: list[Any] = list(turns)
    if out:
        last = out[-1]
        out[-1] = {
            "role": last["role"],
            "content": [{"type": "text", "text": str(last["content"]), "cache_control": mark}],
        }
    return system_blocks, out


class _SDKOptions(TypedDict):
    """What the async and the sync SDK client share."""

    api_key: str
    base_url: str | None
    max_retries: int
    timeout: NotRequired[float]  # absent: the SDK's own default


class AnthropicClient(LMClient):
    """Messages from the Anthropic API (or a compatible server).

    ``timeout`` bounds each call in total, retries included (``None``: only the SDK's
    per-read timeout, which a slow trickle never trips).
    """

    def __init__(
        self,
        model_name: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        max_tokens: int = 8192,
        max_retries: int = 3,
        timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        pricing: Pricing | None = None,
        context_chars: int | None = None,
        http_client: httpx2.AsyncClient | None = None,
        prompt_caching: bool = True,
        system_as_user: bool | None = None,
        context_window: int | None = None,
        **completion_kwargs: Any,
    ) -> None:
        if context_window is not None and context_window < 1:
            raise ValueError(f"context_window must be >= 1 token, got {context_window!r}")
        #: The model's window in tokens when the user gave it (``backend_kwargs``); taken
        #: here, never sent: the Messages API refuses parameters it does not know.
        self.context_window = context_window
        #: True: the system prompt goes in the first user turn (the config's option; the
        #: Messages API always has a system parameter, so None and False keep it there).
        self.system_as_user = bool(system_as_user)
        #: Mark the system prompt and the newest message as cache breakpoints: the RLM
        #: history is append-only, so each call reads the previous call's prefix.
        self.prompt_caching = prompt_caching
        common: _SDKOptions = {
            "api_key": api_key or os.environ.get("ANTHROPIC_API_KEY") or "not-needed",
            "base_url": base_url or os.environ.get("ANTHROPIC_BASE_URL"),
            "max_retries": max_retries,
        }
        if timeout is not None:
            common["timeout"] = timeout
        self.timeout = timeout
        self._common = common
        self._async_clients = PerLoop(
            anthropic.AsyncAnthropic(
                **common,
                http_client=http_client
                or anthropic.DefaultAsyncHttpxClient(verify=shared_ssl_context()),
            ),
            None
            if http_client is not None
            else lambda: anthropic.AsyncAnthropic(
                **common, http_client=anthropic.DefaultAsyncHttpxClient(verify=shared_ssl_context())
            ),
        )
        #: Where requests go, as errors name it (the SDK's resolved URL, never None).
        self.url = str(self._async.base_url).rstrip("/")
        self.where = f"the server at {self.url}"
        self._sync_client: anthropic.Anthropic | None = None
        self.base_url = common["base_url"]
        self.model_name = model_name or "claude-sonnet-4-5"
        self.max_tokens = max_tokens
        self._pricing = pricing
        self.completion_kwargs = completion_kwargs
        if context_chars:
            self.context_chars = context_chars
        elif context_window:  # what the root is told a sub-model reads at once
            self.context_chars = window_chars(context_window, max_tokens)

    @property
    def _sync(self) -> anthropic.Anthropic:
        if self._sync_client is None:
            http = anthropic.DefaultHttpxClient(verify=shared_ssl_context())
            self._sync_client = anthropic.Anthropic(
                **self._common, http_client=enforce_sync_deadlines(http)
            )
        return self._sync_client

    def _kwargs(
        self, messages: list[Message], model: str | None, timeout: float | None
    ) -> dict[str, Any]:
        system, turns = split_system(
            system_as_first_user(messages) if self.system_as_user else messages
        )
        # Only conversations that will be sent again are marked (the root's history has a
        # system prompt); a one-shot sub-call would pay the 25% cache-write premium for a
        # prefix nobody reads.
        caching = self.prompt_caching and bool(system or len(turns) > 1)
        if caching:
            system_param, turns = cache_breakpoints(system, turns)
        kw: dict[str, Any] = {
            "model": model or self.model_name,
            "messages": turns,
            "max_tokens": self.max_tokens,
            **self.completion_kwargs,
        }
        if system:
            kw["system"] = system_param if caching else system
        if timeout is not None:
            kw["timeout"] = timeout
        return kw

    def _to_response(self, reply: _Reply) -> LMResponse:
        """The reply as an LMResponse; what the server did not report is estimated."""
        u, model = reply.usage, reply.model
        text = "".join(reply.pieces)
        read = u.get("cache_read_input_tokens", 0)
        written = u.get("cache_creation_input_tokens", 0)
        if "input_tokens" in u:  # Anthropic's input_tokens excludes both cache counts
            inp = u["input_tokens"] + read + written
        else:
            inp = estimate_tokens(reply.prompt_chars)
        out = u.get("output_tokens", 0)
        if not reply.complete:  # message_start's output count is a placeholder
            out = max(out, estimate_tokens(len(text)))
        prices, rates = price_for(model, self._pricing), cache_rates_for(model)
        return LMResponse(
            text=text,
            model=model,
            input_tokens=inp,
            output_tokens=out,
            cost=compute_cost(prices, inp, out, read, written, rates),
            cached_input_tokens=read,
            cache_write_tokens=written,
            truncated=reply.stop_reason == "max_tokens",
            usage_estimated=not reply.complete or "input_tokens" not in u,
        )

    def _whole(self, body: bytes, reply: _Reply) -> LMResponse:
        """A server that ignored ``stream`` answered with one JSON message."""
        reply.add_message(AnthropicMessage.model_validate(json.loads(body)))
        return self._to_response(reply)

    def _reraise(self, e: Exception, bound: float | None) -> NoReturn:
        raise_explained(e, self.url, bound, sdk=anthropic)

    async def acomplete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        bound = timeout if timeout is not None else self.timeout
        return await within_deadline(self._acomplete(messages, model, bound), bound, self.where)

    async def _acomplete(
        self, messages: list[Message], model: str | None, timeout: float | None
    ) -> LMResponse:
        """One streamed request; abandoned (cancelled, timed out, failed), its stream is
        closed so the server stops, and the exception carries the usage estimate."""
        kw = self._kwargs(messages, model, timeout)
        reply = _Reply(kw["model"], sent_chars(messages))
        try:
            try:
                stream = await self._async.messages.create(**kw, stream=True)
            except asyncio.CancelledError as e:  # sent, perhaps being answered
                attach_partial_usage(e, self._to_response(reply))
                raise
            return await adrain(
                stream, reply, lambda: self._to_response(reply), lambda b: self._whole(b, reply)
            )
        except (anthropic.APIConnectionError, *SDK_FAILURES) as e:
            self._reraise(e, timeout)

    def complete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        bound = timeout if timeout is not None else self.timeout
        kw = self._kwargs(messages, model, bound)
        reply = _Reply(kw["model"], sent_chars(messages))
        with sync_deadline(bound, self.where):
            try:
                stream = self._sync.messages.create(**kw, stream=True)
                return drain(
                    stream,
                    reply,
                    lambda: self._to_response(reply),
                    lambda b: self._whole(b, reply),
                )
            except (anthropic.APIConnectionError, *SDK_FAILURES) as e:
                self._reraise(e, bound)

    @property
    def _async(self) -> anthropic.AsyncAnthropic:
        """The async SDK client of the running event loop (``rlm_engine.clients.per_loop``)."""
        return self._async_clients.get()

    async def aclose(self) -> None:
        await self._async.close()
        if self._sync_client is not None:
            self._sync_client.close()

    def describe(self) -> dict[str, Any]:
        return {"client": "anthropic", "model": self.model_name, "base_url": self.base_url}
