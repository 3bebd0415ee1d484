"""OpenAI-compatible chat client (OpenAI, vLLM, llama.cpp, OpenRouter, ...) on the openai SDK.

The SDK retries timeouts, 429 and 5xx with exponential backoff (``max_retries``); we add
one more retry for bodies that do not parse, which some local servers send under load.
Requests go through the SDK's generic ``post`` (same retries, auth and timeouts): its typed
``chat.completions.create`` re-validates the whole message history on every call, which
cost 5-15 ms per root call on long RLM conversations.

``timeout`` is a total deadline per call, retries and a slowly arriving body included
(``rlm_engine.clients.deadline``); errors name the server's URL.

Every request is a stream (``rlm_engine.clients.streaming``): a call abandoned at its
deadline, cancelled or stopped by a budget closes its stream, which is what makes vLLM,
llama.cpp and OpenAI stop generating it. Usage comes from the stream's final chunk
(``stream_options.include_usage``), else it is estimated and marked so. Consecutive
messages of one role are merged before sending (strict chat templates refuse them), and
the reply cap goes out as ``max_completion_tokens`` to api.openai.com (its reasoning
models refuse ``max_tokens``) and as ``max_tokens`` to every other server.

Windows are read, not assumed (``rlm_engine.clients.server_info``): the ``vllm`` and
``llamacpp`` backends ask the server once for the model's window (``max_model_len``,
``n_ctx``) and chat template; every OpenAI-compatible client learns it from a refusal that
states it, or takes ``context_window`` from the user. A window known from the server or the user (``context_window``) holds
prompt and reply together, so the reply cap is lowered to the room the prompt leaves
(vLLM refuses prompt + ``max_tokens`` past ``max_model_len``; a refusal that names the
prompt's exact size is retried once with the room it leaves), and the root is told what
the sub-model really reads. A chat template without a system role (Gemma on llama.cpp)
gets the system prompt as the first user turn (``system_as_user``).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, NotRequired, TypedDict, TypeVar
from urllib.parse import urlparse

import openai
from openai.types.chat import ChatCompletion

from rlm_engine.clients.base import (
    SDK_FAILURES,
    LMClient,
    Pricing,
    ReplyNotJSONError,
    alternate_roles,
    cache_rates_for,
    compute_cost,
    price_for,
    raise_explained,
    shared_ssl_context,
    system_as_first_user,
)
from rlm_engine.clients.deadline import (
    RequestTimeoutError,
    enforce_sync_deadlines,
    sync_deadline,
    within_deadline,
)
from rlm_engine.clients.per_loop import PerLoop
from rlm_engine.clients.server_info import ServerInfo, probe
from rlm_engine.clients.streaming import (
    adrain,
    attach_partial_usage,
    drain,
    estimate_tokens,
    sent_chars,
)
from rlm_engine.config import DEFAULT_REQUEST_TIMEOUT
from rlm_engine.types import LMResponse, Message
from rlm_engine.windows import (
    CHARS_PER_TOKEN,
    cap_too_large,
    drops_system,
    known_window,
    reply_room,
    window_chars,
)

if TYPE_CHECKING:
    import httpx2  # the SDK's HTTP library

DEFAULT_LOCAL_URL = "http://localhost:8080/v1"
DEFAULT_OPENAI_MODEL = "gpt-5-mini"
_MALFORMED_RETRIES = 2
#: Names the model where a model is needed, in each form's own spelling.
NAME_THE_MODEL = (
    "Name the model: RLM(model=...), RLMChatModel(model=...), build_rlm_graph(model=...) "
    "or rlm run --model NAME"
)
T = TypeVar("T")


def resolve_base_url(base_url: str | None, api_key: str | None = None) -> str | None:
    """Explicit URL, else ``RLM_API_URL``, else ``OPENAI_BASE_URL``, else OpenAI itself when a
    key is given or set, else a local server on port 8080 (the seed rlm_repl's default)."""
    if base_url:
        return base_url
    for var in ("RLM_API_URL", "OPENAI_BASE_URL"):
        if os.environ.get(var):
            return os.environ[var]
    return None if (api_key or os.environ.get("OPENAI_API_KEY")) else DEFAULT_LOCAL_URL


def _field(obj: Any, name: str) -> Any:
    """``obj.name`` or ``obj[name]``: chunks and replies are read as plain dicts (building
    the SDK's ``ChatCompletionChunk`` models cost ~60 µs a chunk, 3 ms on a 50-chunk
    reply from a local server), attributes kept for objects a caller hands in."""
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


class _Reply:
    """A reply as it arrives: text, finish reason, model and the usage the server sent."""

    def __init__(self, model: str, prompt_chars: int) -> None:
        self.model = model
        self.prompt_chars = prompt_chars
        self.pieces: list[str] = []
        self.finish: str | None = None
        self.usage: Any = None

    def add(self, chunk: Any) -> None:
        """One stream chunk (or a whole completion, whose ``message`` is its only delta)."""
        self.model = _field(chunk, "model") or self.model
        if _field(chunk, "usage") is not None:  # the final chunk (llama.cpp: with choices)
            self.usage = _field(chunk, "usage")
        for choice in _field(chunk, "choices") or []:
            if (_field(choice, "index") or 0) != 0:
                continue
            delta = _field(choice, "delta") or _field(choice, "message")
            text = _field(delta, "content") if delta is not None else None
            if isinstance(text, str):
                self.pieces.append(text)
            self.finish = _field(choice, "finish_reason") or self.finish


def is_openai_api(url: str) -> bool:
    """Whether ``url`` is OpenAI's own API (not an OpenAI-compatible server)."""
    return (urlparse(url).hostname or "").lower() == "api.openai.com"


class _SDKOptions(TypedDict):
    """What the async and the sync SDK client share."""

    api_key: str
    base_url: str | None
    max_retries: int
    timeout: NotRequired[float]  # absent: the SDK's own default
    default_headers: Mapping[str, str] | None


class OpenAIClient(LMClient):
    """Chat completions from an OpenAI-compatible server.

    ``timeout`` bounds each call in total, retries included (``None``: only the SDK's
    per-read timeout, which a slow trickle never trips).
    """

    def __init__(
        self,
        model_name: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        max_retries: int = 3,
        timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        pricing: Pricing | None = None,
        context_chars: int | None = None,
        default_headers: dict[str, str] | None = None,
        http_client: httpx2.AsyncClient | None = None,
        prompt_caching: bool = True,
        max_tokens: int | None = None,
        context_window: int | None = None,
        system_as_user: bool | None = None,
        **completion_kwargs: Any,
    ) -> None:
        # OpenAI-compatible servers cache identical prompt prefixes on their own (nothing
        # to mark, nothing to turn off); the engine keeps the root history's prefix
        # byte-identical from call to call so they can. Accepted for one config everywhere.
        self.prompt_caching = prompt_caching
        self.base_url = resolve_base_url(base_url, api_key)
        key = api_key or os.environ.get("OPENAI_API_KEY") or "not-needed"
        common: _SDKOptions = {
            "api_key": key,
            "base_url": self.base_url,
            "max_retries": max_retries,
            "default_headers": default_headers,
        }
        if timeout is not None:
            common["timeout"] = timeout
        self.timeout = timeout
        self._common = common
        self._async_clients = PerLoop(
            self._async_sdk(
                common, http_client or openai.DefaultAsyncHttpxClient(verify=shared_ssl_context())
            ),
            None
            if http_client is not None
            else lambda: self._async_sdk(
                common, openai.DefaultAsyncHttpxClient(verify=shared_ssl_context())
            ),
        )
        #: Where requests go, as errors name it (the SDK's resolved URL, never None).
        self.url = str(self._async.base_url).rstrip("/")
        self.where = f"the server at {self.url}"
        self._sync_client: openai.OpenAI | None = None
        self._requested_model = model_name
        if model_name in (None, "", "auto"):
            # Asking api.openai.com for its model list would pick an arbitrary model.
            model_name = DEFAULT_OPENAI_MODEL if self.base_url is None else "auto"
        self.model_name = model_name
        self._pricing = pricing
        #: The reply cap; sent as ``max_completion_tokens`` to OpenAI itself, whose
        #: reasoning models (gpt-5, o-series) refuse ``max_tokens``, and as ``max_tokens``
        #: (which every OpenAI-compatible server takes) elsewhere. An explicit
        #: ``max_completion_tokens=`` in the completion kwargs is sent as given instead.
        self.max_tokens = max_tokens
        self.cap_name = "max_completion_tokens" if is_openai_api(self.url) else "max_tokens"
        self.completion_kwargs = completion_kwargs
        #: Ask for the stream's usage chunk; off once the server refused ``stream_options``
        #: (older Azure API versions, some proxies): usage is then estimated.
        self._usage_in_stream = True
        #: Characters the root is told a sub-call may hold; None: from the window.
        self._explicit_chars = context_chars or None
        if context_window is not None and context_window < 1:
            raise ValueError(f"context_window must be >= 1 token, got {context_window!r}")
        #: The model's window in tokens, prompt and reply together, as the user gave it.
        self._user_window = context_window
        #: True/False as the user chose; None: decided from the server's chat template or
        #: the model's family (``rlm_engine.windows.drops_system``).
        self.system_as_user = system_as_user
        #: What the server said about itself (None: not asked yet).
        self._facts: ServerInfo | None = None
        self._facts_lock = threading.Lock()
        self._headers = dict(default_headers or {})
        self._resolve_lock = asyncio.Lock()

    #: Ask the server for the model's window and chat template (two GETs, once): on for
    #: the local-server backends (``vllm``, ``llamacpp``), which answer them, and for the
    #: plain client when no model is named (it lists the server's models anyway); else
    #: the plain client learns a window from a refusal that states it, or from
    #: ``context_window``.
    discovers_window = False
    #: Whether that includes llama.cpp's ``/props`` (off for services that have none).
    asks_props = True

    @property
    def asks_server(self) -> bool:
        """Whether to ask the server for its window and template: never OpenAI itself (its
        models are in the built-in table), nor when the user gave both."""
        told = self._user_window is not None and self.system_as_user is not None
        # Without a model name the server's list is read anyway (the first model is
        # used): that is a local or self-hosted server, whose window is worth the GETs.
        listed = self._requested_model in (None, "", "auto") and self.base_url is not None
        return (self.discovers_window or listed) and not told and not is_openai_api(self.url)

    def server_facts(self) -> ServerInfo:
        """What the server reports about the model (asked once; blocking, bounded)."""
        if self._facts is None:
            with self._facts_lock:
                if self._facts is None:
                    model = None if self.model_name == "auto" else self.model_name
                    self._facts = (
                        probe(self.url, model, self._probe_headers(), props=self.asks_props)
                        if self.asks_server
                        else ServerInfo()
                    )
        return self._facts

    def _probe_headers(self) -> dict[str, str]:
        key = self._common["api_key"]
        auth = {"Authorization": f"Bearer {key}"} if key != "not-needed" else {}
        return {**auth, **self._headers, "User-Agent": "rlm-engine-probe/1"}

    @property
    def context_window(self) -> int | None:
        """The window in tokens, prompt and reply together: the user's, else the server's."""
        if self._user_window is not None:
            return self._user_window
        return self.server_facts().window

    @property
    def context_chars(self) -> int:
        """Characters a sub-call prompt may hold, as the root is told: given, else from the
        window the server or user gave (less room for a reply), else from the built-in
        table of cloud models, else the engine's default."""
        if self._explicit_chars:
            return self._explicit_chars
        window = self.context_window
        if window:
            return window_chars(window, self.max_tokens)
        listed = known_window(None if self.model_name == "auto" else self.model_name)
        if listed:
            return int(listed * CHARS_PER_TOKEN * 0.9)
        return LMClient.context_chars

    @context_chars.setter
    def context_chars(self, value: int) -> None:
        self._explicit_chars = value

    def _system_as_user(self, model: str) -> bool:
        if self.system_as_user is not None:
            return self.system_as_user
        facts = self._facts or ServerInfo()
        return drops_system(model, facts.chat_template)

    async def _model(self, model: str | None) -> str:
        if model:
            return model
        if self.model_name == "auto":
            async with self._resolve_lock:
                if self.model_name == "auto":
                    self.model_name = await self._first_server_model()
        return self.model_name

    async def _first_server_model(self) -> str:
        try:
            page = await self._sdk_call(self._async.models.list)
        except (openai.OpenAIError, RequestTimeoutError, ReplyNotJSONError) as e:
            raise RuntimeError(
                f"No model was named, so the first one the server lists was to be used, but "
                f"listing models at {self.url}/models failed ({e}). {NAME_THE_MODEL}."
            ) from e
        models = [m.id for m in page.data]
        if not models:
            raise RuntimeError(
                f"No model was named and the server at {self.url} lists none. {NAME_THE_MODEL}."
            )
        return models[0]

    def _reraise(self, e: Exception, bound: float | None, tries: int = 1) -> NoReturn:
        raise_explained(e, self.url, bound, sdk=openai, tries=tries)

    async def _sdk_call(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except (openai.APIConnectionError, *SDK_FAILURES) as e:
            self._reraise(e, self.timeout)

    @property
    def _sync(self) -> openai.OpenAI:
        if self._sync_client is None:  # most runs are async-only; skip the second pool
            http = enforce_sync_deadlines(openai.DefaultHttpxClient(verify=shared_ssl_context()))
            self._sync_client = self._sync_sdk(self._common, http)
        return self._sync_client

    def _async_sdk(self, common: _SDKOptions, http: httpx2.AsyncClient) -> openai.AsyncOpenAI:
        """The SDK's async client (a subclass may make Azure's)."""
        return openai.AsyncOpenAI(**common, http_client=http)

    def _sync_sdk(self, common: _SDKOptions, http: httpx2.Client) -> openai.OpenAI:
        """The SDK's sync client, made on first sync use."""
        return openai.OpenAI(**common, http_client=http)

    def _request(
        self, messages: list[Message], model: str, timeout: float | None, room: int | None = None
    ) -> dict[str, Any]:
        """The request body; ``room``: the reply tokens the window has left, when known
        from a refusal (else estimated from a known window)."""
        if self._system_as_user(model):
            messages = system_as_first_user(messages)
        messages = alternate_roles(messages)
        body: dict[str, Any] = {"model": model, "messages": messages, **self.completion_kwargs}
        if self.max_tokens is not None and not {"max_tokens", "max_completion_tokens"} & set(body):
            body[self.cap_name] = self.max_tokens
        window = (
            self._user_window
            if self._user_window is not None
            else (self._facts.window if self._facts else None)
        )
        if room is None and window is not None:
            room = reply_room(window, messages)
        if room is not None:
            key = next((k for k in ("max_tokens", "max_completion_tokens") if k in body), None)
            body[key or self.cap_name] = min(body[key], room) if key else room
        body["stream"] = True
        if self._usage_in_stream:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        else:
            body.pop("stream_options", None)
        options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        return {"cast_to": ChatCompletion, "body": body, "options": options, "stream": True}

    def _to_response(self, reply: _Reply) -> LMResponse:
        """The reply as an LMResponse; without the server's usage, an estimate marked so."""
        text = "".join(reply.pieces)
        usage = reply.usage
        estimated = usage is None
        if estimated:
            inp, out, cached = estimate_tokens(reply.prompt_chars), estimate_tokens(len(text)), 0
            cost = None
        else:
            inp = _field(usage, "prompt_tokens") or 0
            out = _field(usage, "completion_tokens") or 0
            details = _field(usage, "prompt_tokens_details")
            cached = (_field(details, "cached_tokens") if details else 0) or 0
            cost = _field(usage, "cost")  # OpenRouter reports it
        if cost is None:
            prices, rates = price_for(reply.model, self._pricing), cache_rates_for(reply.model)
            cost = compute_cost(prices, inp, out, cached, 0, rates)
        return LMResponse(
            text=text,
            model=reply.model,
            input_tokens=inp,
            output_tokens=out,
            cost=cost,
            cached_input_tokens=cached,
            truncated=reply.finish == "length",
            usage_estimated=estimated,
        )

    def _refused_stream_options(self, e: openai.BadRequestError) -> bool:
        """A 400 naming ``stream_options``: stop asking for the usage chunk (and resend)."""
        if self._usage_in_stream and "stream_options" in str(e):
            self._usage_in_stream = False
            return True
        return False

    def _whole(self, body: bytes, reply: _Reply) -> LMResponse:
        """A server that ignored ``stream`` answered with one JSON completion."""
        data = json.loads(body)
        if not isinstance(data, dict) or not data.get("choices"):
            raise ValueError(f"Malformed completion from {self.url}: no choices")
        reply.add(data)
        return self._to_response(reply)

    async def acomplete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        bound = timeout if timeout is not None else self.timeout
        return await within_deadline(self._acomplete(messages, model, bound), bound, self.where)

    async def _acomplete(
        self, messages: list[Message], model: str | None, timeout: float | None
    ) -> LMResponse:
        name = await self._model(model)
        if self._facts is None:
            await asyncio.to_thread(self.server_facts)
        for attempt in range(_MALFORMED_RETRIES + 1):
            try:
                room: int | None = None
                while True:  # each fix applies once (_refusal_fix), then a 400 is raised
                    try:
                        return await self._astream(messages, name, timeout, room)
                    except openai.BadRequestError as e:
                        room = self._refusal_fix(e, room)
            except openai.APIConnectionError as e:
                self._reraise(e, timeout)
            except (ValueError, openai.APIResponseValidationError) as e:
                if attempt == _MALFORMED_RETRIES:
                    self._reraise(e, timeout, attempt + 1)
                await asyncio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def _refusal_fix(self, e: openai.BadRequestError, room: int | None) -> int | None:
        """The reply room to resend with after a 400 this client can fix, else re-raise:
        ``stream_options`` refused (resend without, same room), or a reply cap the server
        says does not fit beside the prompt (resend with the room its numbers leave)."""
        if self._refused_stream_options(e):
            return room
        refused = cap_too_large(e)
        if refused is None or room is not None:
            raise e
        window, prompt = refused
        if self._user_window is None and (self._facts is None or self._facts.window is None):
            self._facts = ServerInfo(
                window, "the server's refusal", (self._facts or ServerInfo()).chat_template
            )
        return window - prompt

    async def _astream(
        self, messages: list[Message], name: str, timeout: float | None, room: int | None = None
    ) -> LMResponse:
        """One streamed request; abandoned (cancelled, timed out, failed), its stream is
        closed so the server stops, and the exception carries the usage estimate."""
        reply = _Reply(name, sent_chars(messages))
        try:
            stream = await self._async.post(
                "/chat/completions",
                **self._request(messages, name, timeout, room),
                stream_cls=openai.AsyncStream[dict[str, Any]],
            )
        except asyncio.CancelledError as e:  # sent, perhaps being answered: count the prompt
            attach_partial_usage(e, self._to_response(reply))
            raise
        return await adrain(
            stream, reply, lambda: self._to_response(reply), lambda b: self._whole(b, reply)
        )

    def complete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        name = model or (self.model_name if self.model_name != "auto" else None)
        if name is None:
            return super().complete(messages, model=model, timeout=timeout)
        bound = timeout if timeout is not None else self.timeout
        self.server_facts()
        with sync_deadline(bound, self.where):
            try:
                room: int | None = None
                while True:  # each fix applies once (_refusal_fix), then a 400 is raised
                    try:
                        return self._stream(messages, name, bound, room)
                    except openai.BadRequestError as e:
                        room = self._refusal_fix(e, room)
            except (openai.APIConnectionError, *SDK_FAILURES) as e:
                self._reraise(e, bound)

    def _stream(
        self, messages: list[Message], name: str, timeout: float | None, room: int | None = None
    ) -> LMResponse:
        """:meth:`_astream` for the sync client."""
        reply = _Reply(name, sent_chars(messages))
        stream = self._sync.post(
            "/chat/completions",
            **self._request(messages, name, timeout, room),
            stream_cls=openai.Stream[dict[str, Any]],
        )
        return drain(
            stream, reply, lambda: self._to_response(reply), lambda b: self._whole(b, reply)
        )

    @property
    def _async(self) -> openai.AsyncOpenAI:
        """The async SDK client of the running event loop (``rlm_engine.clients.per_loop``)."""
        return self._async_clients.get()

    async def aclose(self) -> None:
        await self._async.close()
        if self._sync_client is not None:
            self._sync_client.close()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "client": "openai",
            "model": self.model_name,
            "base_url": self.base_url,
        }
        facts = self._facts
        if self._user_window is not None:
            out["context_window"], out["window_source"] = self._user_window, "user"
        elif facts is not None and facts.window is not None:
            out["context_window"], out["window_source"] = facts.window, facts.source
        return out
