"""OpenAI-compatible chat client (OpenAI, vLLM, llama.cpp, OpenRouter, ...) on the openai SDK.

The SDK retries timeouts, 429 and 5xx with exponential backoff (``max_retries``); we add
one more retry for bodies that do not parse, which some local servers send under load.
Requests go through the SDK's generic ``post`` (same retries, auth and timeouts): its typed
``chat.completions.create`` re-validates the whole message history on every call, which
cost 5-15 ms per root call on long RLM conversations.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

import openai
from openai.types.chat import ChatCompletion

from rlm_engine.clients.base import (
    LMClient,
    Pricing,
    compute_cost,
    price_for,
    shared_ssl_context,
)
from rlm_engine.types import LMResponse, Message

if TYPE_CHECKING:
    import httpx2  # the SDK's HTTP library

DEFAULT_LOCAL_URL = "http://localhost:8080/v1"
DEFAULT_OPENAI_MODEL = "gpt-5-mini"
_MALFORMED_RETRIES = 2


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
    timeout: float
    default_headers: Mapping[str, str] | None


class OpenAIClient(LMClient):
    def __init__(
        self,
        model_name: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        max_retries: int = 3,
        timeout: float = 600.0,
        pricing: Pricing | None = None,
        context_chars: int | None = None,
        default_headers: dict[str, str] | None = None,
        http_client: httpx2.AsyncClient | None = None,
        **completion_kwargs: Any,
    ) -> None:
        self.base_url = resolve_base_url(base_url, api_key)
        key = api_key or os.environ.get("OPENAI_API_KEY") or "not-needed"
        common: _SDKOptions = {
            "api_key": key,
            "base_url": self.base_url,
            "max_retries": max_retries,
            "timeout": timeout,
            "default_headers": default_headers,
        }
        self._common = common
        self._async = openai.AsyncOpenAI(
            **common,
            http_client=http_client or openai.DefaultAsyncHttpxClient(verify=shared_ssl_context()),
        )
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
            page = await self._async.models.list()
        except openai.OpenAIError as e:
            raise RuntimeError(
                f"model_name is 'auto' but listing models at {self.base_url} failed ({e}). "
                "Pass backend_kwargs={'model_name': ...} (or --model on the command line)."
            ) from e
        models = [m.id for m in page.data]
        if not models:
            raise RuntimeError(f"The server at {self.base_url} lists no models; set model_name.")
        return models[0]

    @property
    def _sync(self) -> openai.OpenAI:
        if self._sync_client is None:  # most runs are async-only; skip the second pool
            self._sync_client = openai.OpenAI(
                **self._common, http_client=openai.DefaultHttpxClient(verify=shared_ssl_context())
            )
        return self._sync_client

    def _request(
        self, messages: list[Message], model: str, timeout: float | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": messages, **self.completion_kwargs}
        options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        return {"cast_to": ChatCompletion, "body": body, "options": options}

    def _to_response(self, completion: ChatCompletion, model: str) -> LMResponse:
        if not getattr(completion, "choices", None):
            raise ValueError(f"Malformed completion from {self.base_url}: no choices")
        text = completion.choices[0].message.content or ""
        usage = getattr(completion, "usage", None)
        inp = getattr(usage, "prompt_tokens", 0) or 0
        out = getattr(usage, "completion_tokens", 0) or 0
        cost = getattr(usage, "cost", None)  # OpenRouter reports it
        if cost is None:
            cost = compute_cost(price_for(model, self._pricing), inp, out)
        return LMResponse(
            text=text,
            model=completion.model or model,
            input_tokens=inp,
            output_tokens=out,
            cost=cost,
        )

    async def acomplete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        name = await self._model(model)
        for attempt in range(_MALFORMED_RETRIES + 1):
            try:
                completion = await self._async.post(
                    "/chat/completions", **self._request(messages, name, timeout)
                )
                return self._to_response(completion, name)
            except (json.JSONDecodeError, ValueError, openai.APIResponseValidationError):
                if attempt == _MALFORMED_RETRIES:
                    raise
                await asyncio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def complete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        name = model or (self.model_name if self.model_name != "auto" else None)
        if name is None:
            return super().complete(messages, model=model, timeout=timeout)
        completion = self._sync.post("/chat/completions", **self._request(messages, name, timeout))
        return self._to_response(completion, name)

    async def aclose(self) -> None:
        await self._async.close()
        if self._sync_client is not None:
            self._sync_client.close()

    def describe(self) -> dict[str, Any]:
        return {"client": "openai", "model": self.model_name, "base_url": self.base_url}
