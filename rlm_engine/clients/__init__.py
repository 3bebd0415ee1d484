"""LM backends by name. A new backend is one module plus one line in ``BACKENDS``."""

from __future__ import annotations

import importlib
from typing import Any

from rlm_engine.clients.base import LMClient

BACKENDS: dict[str, str] = {
    "openai": "rlm_engine.clients.openai:OpenAIClient",
    "anthropic": "rlm_engine.clients.anthropic:AnthropicClient",
    "scripted": "rlm_engine.clients.scripted:ScriptedClient",
    "langchain": "rlm_integrations.langchain.client:LangChainClient",
}


def make_client(backend: Any, kwargs: dict[str, Any] | None = None) -> LMClient:
    """An ``LMClient`` from a backend name, an ``LMClient``, or a LangChain chat model."""
    kwargs = dict(kwargs or {})
    if isinstance(backend, LMClient):
        return backend
    if not isinstance(backend, str):
        if hasattr(backend, "ainvoke") and hasattr(backend, "_generate"):  # a BaseChatModel
            return _load(BACKENDS["langchain"])(backend, **kwargs)
        raise TypeError(
            f"backend must be a name, an LMClient or a LangChain chat model, got {backend!r}"
        )
    try:
        target = BACKENDS[backend]
    except KeyError:
        raise ValueError(
            f"Unknown backend {backend!r}. Choose one of: {', '.join(BACKENDS)}."
        ) from None
    return _load(target)(**kwargs)


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise ImportError(
            f"Backend {target} needs an optional dependency: {e}. "
            "Install the matching extra, e.g. `pip install rlm-integrations[langchain]`."
        ) from e


__all__ = ["BACKENDS", "LMClient", "make_client"]
