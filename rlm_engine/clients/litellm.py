"""``backend="litellm"``: any provider LiteLLM supports, through ``litellm.acompletion``.

Install with ``pip install 'rlm-integrations[litellm]'``. The model is LiteLLM's
``provider/model`` id (``bedrock/anthropic.claude-3-5-sonnet...``, ``vertex_ai/gemini-2.5-pro``,
``ollama/llama3.1``, ``openai/...`` with ``base_url`` for an OpenAI-compatible server); keys
come from each provider's usual variables, or ``api_key``.

Every request is a stream with ``stream_options.include_usage``, closed when a call is
abandoned (timeout, cancellation, budget stop) so the provider stops generating; usage
comes from the stream's last chunk, else is estimated and marked so. The cost is the
provider's when the response reports one, else LiteLLM's own price table
(``litellm.cost_per_token``), else the built-in table; ``pricing`` overrides all.
LiteLLM retries (``num_retries``) within the call's total deadline. Its
``ContextWindowExceededError`` is recognised as a prompt past the window.
"""

from __future__ import annotations

import contextlib
from typing import Any

from rlm_engine.clients.base import (
    LMClient,
    Pricing,
    alternate_roles,
    compute_cost,
    price_for,
    system_as_first_user,
)
from rlm_engine.clients.deadline import within_deadline
from rlm_engine.clients.streaming import attach_partial_usage, estimate_tokens, sent_chars
from rlm_engine.config import DEFAULT_REQUEST_TIMEOUT
from rlm_engine.types import LMResponse, Message
from rlm_engine.windows import CHARS_PER_TOKEN, known_window, window_chars

try:
    import litellm
except ImportError as e:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "backend='litellm' needs LiteLLM: pip install 'rlm-integrations[litellm]'"
    ) from e


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


class LiteLLMClient(LMClient):
    """Chat completions through LiteLLM."""

    def __init__(
        self,
        model_name: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        max_retries: int = 3,
        pricing: Pricing | None = None,
        context_window: int | None = None,
        context_chars: int | None = None,
        prompt_caching: bool = True,
        system_as_user: bool | None = None,
        **completion_kwargs: Any,
    ) -> None:
        if model_name in (None, "", "auto"):
            raise ValueError(
                "backend='litellm' needs LiteLLM's model id: model='provider/model' "
                "(e.g. 'anthropic/claude-sonnet-4-5', 'ollama/llama3.1')"
            )
        assert model_name is not None
        self.model_name = model_name
        self.base_url = base_url
        self.prompt_caching = prompt_caching
        #: True: the system prompt goes in the first user turn (LiteLLM itself adapts the
        #: system role to each provider, so None leaves it there).
        self.system_as_user = bool(system_as_user)
        self.timeout = timeout
        self._pricing = pricing
        self._window = context_window
        self._explicit_chars = context_chars
        self.max_tokens = max_tokens
        kwargs: dict[str, Any] = {"num_retries": max_retries, **completion_kwargs}
        if base_url:
            kwargs["api_base"] = base_url
        if api_key:
            kwargs["api_key"] = api_key
        if temperature is not None:
            kwargs["temperature"] = temperature
        if max_tokens is not None:
            kwargs.setdefault("max_tokens", max_tokens)
        if timeout is not None:
            kwargs.setdefault("timeout", timeout)
        self._kwargs = kwargs
        self.where = f"LiteLLM ({model_name}{' at ' + base_url if base_url else ''})"

    @property
    def context_chars(self) -> int:
        """Characters a sub-call may hold: given, else the user's window, else LiteLLM's
        model table (``max_input_tokens``), else the built-in table."""
        if self._explicit_chars:
            return self._explicit_chars
        if self._window:
            return window_chars(self._window, self.max_tokens)
        listed = known_window(self.model_name)
        if listed is None:
            with contextlib.suppress(Exception):  # models LiteLLM does not know raise
                info = litellm.get_model_info(self.model_name)
                listed = info.get("max_input_tokens") or None
        return int(listed * CHARS_PER_TOKEN * 0.9) if listed else LMClient.context_chars

    @context_chars.setter
    def context_chars(self, value: int) -> None:
        self._explicit_chars = value

    def _cost(self, model: str, inp: int, out: int, cached: int, reported: Any) -> float | None:
        if self._pricing is not None:
            return compute_cost(price_for(model, self._pricing), inp, out)
        if isinstance(reported, int | float):
            return float(reported)
        with contextlib.suppress(Exception):  # a model LiteLLM has no price for
            p, c = litellm.cost_per_token(model=model, prompt_tokens=inp, completion_tokens=out)
            return float(p + c)
        return compute_cost(price_for(model), inp, out)

    def _response(self, model: str, prompt_chars: int, reply: _Reply) -> LMResponse:
        text = "".join(reply.pieces)
        usage = reply.usage
        estimated = usage is None or not _field(usage, "prompt_tokens")
        if estimated:
            inp, out, cached = estimate_tokens(prompt_chars), estimate_tokens(len(text)), 0
            reported = None
        else:
            inp = _field(usage, "prompt_tokens") or 0
            out = _field(usage, "completion_tokens") or 0
            details = _field(usage, "prompt_tokens_details")
            cached = (_field(details, "cached_tokens") if details is not None else 0) or 0
            reported = _field(usage, "cost")
        name = reply.model or model
        return LMResponse(
            text=text,
            model=name,
            input_tokens=inp,
            output_tokens=out,
            cost=self._cost(name, inp, out, cached, reported),
            cached_input_tokens=cached,
            truncated=reply.finish == "length",
            usage_estimated=estimated,
        )

    async def acomplete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        bound = timeout if timeout is not None else self.timeout
        return await within_deadline(self._acomplete(messages, model), bound, self.where)

    async def _acomplete(self, messages: list[Message], model: str | None) -> LMResponse:
        name = model or self.model_name
        reply = _Reply()
        prompt_chars = sent_chars(messages)
        stream: Any = None
        try:
            stream = await litellm.acompletion(
                model=name,
                messages=alternate_roles(
                    system_as_first_user(messages) if self.system_as_user else messages
                ),
                stream=True,
                stream_options={"include_usage": True},
                **self._kwargs,
            )
            async for chunk in stream:
                reply.add(chunk)
        except BaseException as e:
            attach_partial_usage(e, self._response(name, prompt_chars, reply))
            raise
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
        return self._response(name, prompt_chars, reply)

    def describe(self) -> dict[str, Any]:
        return {"client": "litellm", "model": self.model_name, "base_url": self.base_url}


class _Reply:
    """A streamed reply as it arrives (LiteLLM's chunks are OpenAI-shaped)."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.usage: Any = None
        self.finish: str | None = None
        self.model: str | None = None

    def add(self, chunk: Any) -> None:
        self.usage = _field(chunk, "usage") or self.usage
        for choice in (_field(chunk, "choices") or [])[:1]:
            delta = _field(choice, "delta")
            text = _field(delta, "content") if delta is not None else None
            if isinstance(text, str):
                self.pieces.append(text)
            self.finish = _field(choice, "finish_reason") or self.finish


__all__ = ["LiteLLMClient"]
