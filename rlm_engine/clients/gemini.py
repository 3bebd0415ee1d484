"""``backend="gemini"``: Google's Gemini API through its own SDK, ``google-genai``.

Install with ``pip install 'rlm-integrations[gemini]'``. The key is ``api_key`` or
``GEMINI_API_KEY`` / ``GOOGLE_API_KEY``; ``base_url`` points the SDK elsewhere (a proxy,
or the scripted server in tests); ``backend_kwargs={"vertexai": True, "project": ...,
"location": ...}`` uses Vertex AI with Google credentials instead.

Like the other clients it streams every request (``streamGenerateContent``), so a call
abandoned at its deadline, cancelled or stopped by a budget closes its stream; usage
comes from ``usage_metadata`` (thinking tokens count as output, cached content as cached
input), else is estimated and marked so; a reply that ends at ``MAX_TOKENS`` is
``truncated``. The SDK retries what Gemini says is worth retrying (408, 429 and 5xx) with
backoff (``max_retries``), all within the call's total deadline. The system prompt goes in
``system_instruction``, the assistant's turns as role ``model``.
"""

from __future__ import annotations

import os
from typing import Any

from rlm_engine.clients.base import (
    LMClient,
    Pricing,
    alternate_roles,
    cache_rates_for,
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
    from google import genai
    from google.genai import errors as genai_errors
    from google.genai import types as genai_types
except ImportError as e:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "backend='gemini' needs the google-genai SDK: pip install 'rlm-integrations[gemini]'"
    ) from e

DEFAULT_MODEL = "gemini-2.5-flash"
#: HTTP statuses the SDK retries (Gemini's own advice: timeouts, quota, server errors).
RETRYABLE = [408, 429, 500, 502, 503, 504]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") if isinstance(p, dict) else str(p) for p in content if p is not None
        )
    return "" if content is None else str(content)


def to_gemini(messages: list[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """``(system_instruction, contents)`` of an OpenAI-style conversation."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    for m in alternate_roles(messages):
        role, text = m.get("role"), _text(m.get("content"))
        if role in ("system", "developer"):
            system.append(text)
        else:
            gemini_role = "model" if role == "assistant" else "user"
            contents.append({"role": gemini_role, "parts": [{"text": text}]})
    if not contents:  # Gemini needs a user turn
        contents.append({"role": "user", "parts": [{"text": ""}]})
    return ("\n\n".join(system) or None), contents


class GeminiClient(LMClient):
    """Chat completions from Gemini (``generateContent``)."""

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
        vertexai: bool | None = None,
        project: str | None = None,
        location: str | None = None,
        api_version: str | None = None,
        headers: dict[str, str] | None = None,
        system_as_user: bool | None = None,
    ) -> None:
        key = api_key or os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")
        if not key and not vertexai:
            raise ValueError(
                "backend='gemini' needs a key: api_key=... or set GEMINI_API_KEY (or "
                "backend_kwargs={'vertexai': True, 'project': ..., 'location': ...})"
            )
        # Gemini caches long prompts implicitly (cached tokens are reported and billed
        # lower); nothing to mark. Accepted for one config everywhere.
        self.prompt_caching = prompt_caching
        #: True: the system prompt goes in the first user turn instead of system_instruction.
        self.system_as_user = bool(system_as_user)
        self.model_name = model_name if model_name not in (None, "", "auto") else DEFAULT_MODEL
        self.base_url = base_url
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self._pricing = pricing
        self._window = context_window
        self._explicit_chars = context_chars
        options: dict[str, Any] = {
            "retry_options": genai_types.HttpRetryOptions(
                attempts=max_retries + 1, http_status_codes=RETRYABLE
            )
        }
        if base_url:
            options["base_url"] = base_url
        if api_version:
            options["api_version"] = api_version
        if headers:
            options["headers"] = headers
        if timeout is not None:
            options["timeout"] = int(timeout * 1000)  # the SDK counts milliseconds
        kwargs: dict[str, Any] = {"http_options": genai_types.HttpOptions(**options)}
        if vertexai:
            kwargs.update(vertexai=True, project=project, location=location)
        else:
            kwargs["api_key"] = key
        self._client = genai.Client(**kwargs)
        self.where = f"the Gemini API at {base_url or 'generativelanguage.googleapis.com'}"

    @property
    def context_chars(self) -> int:
        """Characters a sub-call may hold: given, else the user's or the table's window."""
        if self._explicit_chars:
            return self._explicit_chars
        if self._window:
            return window_chars(self._window, self.max_tokens)
        listed = known_window(self.model_name)
        return int(listed * CHARS_PER_TOKEN * 0.9) if listed else LMClient.context_chars

    @context_chars.setter
    def context_chars(self, value: int) -> None:
        self._explicit_chars = value

    def _config(self, system: str | None) -> Any:
        config: dict[str, Any] = {}
        if system:
            config["system_instruction"] = system
        if self.max_tokens is not None:
            config["max_output_tokens"] = self.max_tokens
        if self.temperature is not None:
            config["temperature"] = self.temperature
        return genai_types.GenerateContentConfig(**config)

    def _response(self, model: str, prompt_chars: int, reply: _Reply) -> LMResponse:
        text = "".join(reply.pieces)
        meta = reply.usage
        estimated = meta is None or not getattr(meta, "prompt_token_count", None)
        if estimated:
            inp, out, cached = estimate_tokens(prompt_chars), estimate_tokens(len(text)), 0
        else:
            inp = meta.prompt_token_count or 0
            # Thinking tokens are billed as output.
            out = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
            cached = meta.cached_content_token_count or 0
        name = reply.model or model
        return LMResponse(
            text=text,
            model=name,
            input_tokens=inp,
            output_tokens=out,
            cost=compute_cost(
                price_for(name, self._pricing), inp, out, cached, 0, cache_rates_for(name)
            ),
            cached_input_tokens=cached,
            truncated=str(reply.finish).endswith("MAX_TOKENS"),
            usage_estimated=estimated,
        )

    async def acomplete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        bound = timeout if timeout is not None else self.timeout
        return await within_deadline(self._acomplete(messages, model), bound, self.where)

    async def _acomplete(self, messages: list[Message], model: str | None) -> LMResponse:
        name = model or self.model_name
        system, contents = to_gemini(
            system_as_first_user(messages) if self.system_as_user else messages
        )
        reply = _Reply()
        prompt_chars = sent_chars(messages)
        stream: Any = None
        try:
            stream = await self._client.aio.models.generate_content_stream(
                model=name, contents=contents, config=self._config(system)
            )
            async for chunk in stream:
                reply.add(chunk)
        except genai_errors.APIError as e:
            attach_partial_usage(e, self._response(name, prompt_chars, reply))
            raise GeminiError(e, self.where) from e
        except BaseException as e:
            attach_partial_usage(e, self._response(name, prompt_chars, reply))
            raise
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
        return self._response(name, prompt_chars, reply)

    async def aclose(self) -> None:
        close = getattr(self._client.aio, "aclose", None)
        if close is not None:
            await close()

    def describe(self) -> dict[str, Any]:
        return {"client": "gemini", "model": self.model_name, "base_url": self.base_url}


class _Reply:
    """A streamed reply as it arrives: text, the last usage and finish reason, the model."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.usage: Any = None
        self.finish: Any = None
        self.model: str | None = None

    def add(self, chunk: Any) -> None:
        self.usage = getattr(chunk, "usage_metadata", None) or self.usage
        self.model = getattr(chunk, "model_version", None) or self.model
        for cand in (getattr(chunk, "candidates", None) or [])[:1]:
            self.finish = getattr(cand, "finish_reason", None) or self.finish
            content = getattr(cand, "content", None)
            for part in getattr(content, "parts", None) or []:
                text = getattr(part, "text", None)
                if isinstance(text, str) and not getattr(part, "thought", False):
                    self.pieces.append(text)  # thinking summaries are not the answer


class GeminiError(RuntimeError):
    """A Gemini API error, naming the status, Gemini's message and where it came from.

    Keeps ``code`` and ``message`` (so ``rlm_engine.windows`` recognises a prompt past the
    window: "The input token count (N) exceeds the maximum number of tokens allowed (M)").
    """

    def __init__(self, error: Any, where: str) -> None:
        self.code = getattr(error, "code", None)
        self.status = getattr(error, "status", None)
        self.message = getattr(error, "message", None) or str(error)
        super().__init__(f"{where} answered {self.code} {self.status}: {self.message}")


__all__ = ["DEFAULT_MODEL", "GeminiClient", "GeminiError", "to_gemini"]
