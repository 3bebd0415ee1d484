"""OpenAI-compatible chat client (OpenAI, vLLM, llama.cpp, OpenRouter, ...) on the openai SDK.

The SDK retries timeouts, 429 and 5xx with exponential backoff (``max_retries``); we add
one more retry for bodies that do not parse, which some local servers send under load.
Requests go through the SDK's generic ``post`` (same retries, auth and timeouts): its typed
``chat.completions.create`` re-validates the whole message history on every call, which
cost 5-15 ms per root call on long RLM conversations.

``timeout`` is a total deadline per call, retries and a slowly arriving body included
(``rlm_engine.clients.deadline``); errors name the server's URL.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, NotRequired, TypedDict, TypeVar

import openai
from openai.types.chat import ChatCompletion

from rlm_engine.clients.base import (
    SDK_FAILURES,
    LMClient,
    Pricing,
    ReplyNotJSONError,
    cache_rates_for,
    compute_cost,
    price_for,
    raise_explained,
    shared_ssl_context,
)
from rlm_engine.clients.deadline import (
    RequestTimeoutError,
    enforce_sync_deadlines,
    sync_deadline,
    within_deadline,
)
from rlm_engine.config import DEFAULT_REQUEST_TIMEOUT
from rlm_engine.types import LMResponse, Message

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
        self._async = openai.AsyncOpenAI(
            **common,
            http_client=http_client or openai.DefaultAsyncHttpxClient(verify=shared_ssl_context()),
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
        self.completion_kwargs = completion_kwargs
        if context_chars:
            self.context_chars = context_chars
        self._resolve_lock = asyncio.Lock()

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
            self._sync_client = openai.OpenAI(**self._common, http_client=http)
        return self._sync_client

    def _request(
        self, messages: list[Message], model: str, timeout: float | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": messages, **self.completion_kwargs}
        options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        return {"cast_to": ChatCompletion, "body": body, "options": options}

    def _to_response(self, completion: ChatCompletion, model: str) -> LMResponse:
        if not getattr(completion, "choices", None):
            raise ValueError(f"Malformed completion from {self.url}: no choices")
        text = completion.choices[0].message.content or ""
        usage = getattr(completion, "usage", None)
        inp = getattr(usage, "prompt_tokens", 0) or 0
        out = getattr(usage, "completion_tokens", 0) or 0
        details = getattr(usage, "prompt_tokens_details", None)
        cached = getattr(details, "cached_tokens", 0) or 0  # automatic prefix caching
        cost = getattr(usage, "cost", None)  # OpenRouter reports it
        if cost is None:
            prices, rates = price_for(model, self._pricing), cache_rates_for(model)
            cost = compute_cost(prices, inp, out, cached, 0, rates)
        return LMResponse(
            text=text,
            model=completion.model or model,
            input_tokens=inp,
            output_tokens=out,
            cost=cost,
            cached_input_tokens=cached,
        )

    async def acomplete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        bound = timeout if timeout is not None else self.timeout
        return await within_deadline(self._acomplete(messages, model, bound), bound, self.where)

    async def _acomplete(
        self, messages: list[Message], model: str | None, timeout: float | None
    ) -> LMResponse:
        name = await self._model(model)
        for attempt in range(_MALFORMED_RETRIES + 1):
            try:
                completion = await self._async.post(
                    "/chat/completions", **self._request(messages, name, timeout)
                )
                return self._to_response(completion, name)
            except openai.APIConnectionError as e:
                self._reraise(e, timeout)
            except (ValueError, openai.APIResponseValidationError) as e:
                if attempt == _MALFORMED_RETRIES:
                    self._reraise(e, timeout, attempt + 1)
                await asyncio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def complete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        name = model or (self.model_name if self.model_name != "auto" else None)
        if name is None:
            return super().complete(messages, model=model, timeout=timeout)
        bound = timeout if timeout is not None else self.timeout
        with sync_deadline(bound, self.where):
            try:
                completion = self._sync.post(
                    "/chat/completions", **self._request(messages, name, bound)
                )
                return self._to_response(completion, name)
            except (openai.APIConnectionError, *SDK_FAILURES) as e:
                self._reraise(e, bound)

    async def aclose(self) -> None:
        await self._async.close()
        if self._sync_client is not None:
            self._sync_client.close()

    def describe(self) -> dict[str, Any]:
        return {"client": "openai", "model": self.model_name, "base_url": self.base_url}
