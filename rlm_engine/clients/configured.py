"""The root and sub LM clients an :class:`~rlm_engine.config.RLMConfig` describes.

One place turns the ``models`` and ``reply`` options into client keyword arguments, so
``RLM``, the LangGraph graph, the CLI and the LangChain chat model build identical clients
from identical options.

An option left at a non-None default (``timeout``: 300 s) reaches a registered backend
only if its factory takes it: a third-party client written before the default existed
keeps working (the engine still bounds each of its calls through ``acomplete``'s
``timeout``). A value the user set is always passed, so a client that cannot take it
says so.
"""

from __future__ import annotations

import inspect
from typing import Any

from rlm_engine.clients import backend_factory, make_client
from rlm_engine.clients.base import LMClient
from rlm_engine.config import RLMConfig, options


def client_kwargs(config: RLMConfig, *, sub: bool = False) -> dict[str, Any]:
    """Keyword arguments of the root (or sub) client of a backend given by name.

    Typed options first, then ``backend_kwargs`` (``sub_backend_kwargs`` for the sub
    client when given), which win: they are the escape hatch for provider specifics.
    """
    m, r = config.models, config.reply
    kw: dict[str, Any] = {}
    model = (m.sub_model or m.model) if sub else m.model
    if model:
        kw["model_name"] = model
    typed = {
        "base_url": m.base_url,
        "api_key": m.api_key,
        "temperature": m.temperature,
        "max_tokens": r.max_tokens,
        "timeout": r.timeout,
        "max_retries": r.max_retries,
        "prompt_caching": config.history.prompt_caching,
        "system_as_user": m.system_as_user,
    }
    kw.update({k: v for k, v in typed.items() if v is not None})
    extra = m.sub_backend_kwargs if sub and m.sub_backend_kwargs is not None else m.backend_kwargs
    return {**kw, **(extra or {})}


def _takes(factory: Any, name: str) -> bool:
    """Whether ``factory`` accepts the keyword ``name`` (True when it cannot be told)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD or p.name == name for p in params)


def _named_backend_kwargs(backend: str, config: RLMConfig, *, sub: bool) -> dict[str, Any]:
    """:func:`client_kwargs`, less the defaulted options the backend's factory does not take."""
    kw = client_kwargs(config, sub=sub)
    m = config.models
    given = (
        m.sub_backend_kwargs if sub and m.sub_backend_kwargs is not None else m.backend_kwargs
    ) or {}
    factory = backend_factory(backend)
    defaults = options()
    for name in ("timeout", "max_tokens", "max_retries", "temperature", "prompt_caching"):
        defaulted = name in kw and name not in given and kw[name] == defaults[name].default
        if defaulted and not _takes(factory, name):
            del kw[name]
    return kw


def _object_kwargs(config: RLMConfig, *, sub: bool) -> dict[str, Any]:
    """A ready model object keeps its own settings: only a model name and the explicit
    backend kwargs reach its adapter (e.g. a LangChain chat model's ``model_name``)."""
    m = config.models
    kw: dict[str, Any] = {}
    model = (m.sub_model or m.model) if sub else m.model
    if model:
        kw["model_name"] = model
    extra = m.sub_backend_kwargs if sub and m.sub_backend_kwargs is not None else m.backend_kwargs
    return {**kw, **(extra or {})}


def _build(backend: Any, config: RLMConfig, *, sub: bool) -> LMClient:
    if isinstance(backend, LMClient):
        model = config.models.sub_model if sub else config.models.model
        if model and model != backend.model_name:
            raise ValueError(
                f"{'sub_model' if sub else 'model'}={model!r} cannot change a ready "
                f"{type(backend).__name__}: configure the client with that model, or give "
                f"the backend by name."
            )
        return backend
    if isinstance(backend, str):
        return make_client(backend, _named_backend_kwargs(backend, config, sub=sub))
    return make_client(backend, _object_kwargs(config, sub=sub))


def make_clients(config: RLMConfig) -> tuple[LMClient, LMClient]:
    """The root client and the sub-call client (the root client itself unless the config
    names another sub backend, sub model or sub-client kwargs)."""
    m = config.models
    root = _build(m.backend, config, sub=False)
    if m.sub_backend is None and not m.sub_model and not m.sub_backend_kwargs:
        return root, root
    backend = m.sub_backend if m.sub_backend is not None else m.backend
    return root, _build(backend, config, sub=True)


async def aclose_made(config: RLMConfig, *clients: LMClient) -> None:
    """Close each of ``clients`` (once) unless it is a ready ``LMClient`` the user passed as
    ``backend``/``sub_backend``: that one is theirs, to use for the next completion and to
    close when they are done; closing it here broke the second ``completion``."""
    given = {id(config.models.backend), id(config.models.sub_backend)}
    seen: set[int] = set()
    for client in clients:
        if id(client) in seen or id(client) in given:
            continue
        seen.add(id(client))
        await client.aclose()


__all__ = ["aclose_made", "client_kwargs", "make_clients"]
