"""``backend="openrouter"``: OpenRouter, one key for hundreds of models, as a preset of the
OpenAI-compatible client.

- Base URL ``https://openrouter.ai/api/v1``; key ``api_key`` or ``OPENROUTER_API_KEY``.
- Model ids name the provider (``anthropic/claude-sonnet-4.5``, ``openai/gpt-5-mini``;
  default :data:`DEFAULT_MODEL`).
- Every request asks for OpenRouter's usage accounting (``usage: {"include": true}``), so
  the cost it charged comes back as ``usage.cost`` and wins over the built-in price table.
- The model's window is read from OpenRouter's model list (``context_length``).
- ``app_url`` / ``app_name`` are sent as ``HTTP-Referer`` / ``X-Title`` (OpenRouter's app
  attribution), when given.
"""

from __future__ import annotations

import os
from typing import Any

from rlm_engine.clients.openai import OpenAIClient

OPENROUTER_URL = "https://openrouter.ai/api/v1"
DEFAULT_MODEL = "openai/gpt-5-mini"


class OpenRouterClient(OpenAIClient):
    """Chat completions through OpenRouter."""

    discovers_window = True  # OpenRouter's model list has each model's context_length
    asks_props = False

    def __init__(
        self,
        model_name: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        app_url: str | None = None,
        app_name: str | None = None,
        default_headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        key = api_key or os.environ.get("OPENROUTER_API_KEY")
        if not key:
            raise ValueError(
                "backend='openrouter' needs a key: api_key=... or set OPENROUTER_API_KEY"
            )
        headers = dict(default_headers or {})
        if app_url:
            headers.setdefault("HTTP-Referer", app_url)
        if app_name:
            headers.setdefault("X-Title", app_name)
        kwargs.setdefault("usage", {"include": True})  # OpenRouter then reports usage.cost
        model = model_name if model_name not in (None, "", "auto") else DEFAULT_MODEL
        super().__init__(
            model, base_url or OPENROUTER_URL, key, default_headers=headers or None, **kwargs
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "client": "openrouter"}


__all__ = ["DEFAULT_MODEL", "OPENROUTER_URL", "OpenRouterClient"]
