"""LM backends: by name, or through an adapter for a foreign model object.

The engine knows its own clients (``openai``, ``anthropic``, ``scripted``, the presets
``vllm``, ``llamacpp``, ``azure``, ``openrouter``, ``portkey``, and ``gemini`` and
``litellm`` when their extras are installed) and nothing else. Other packages add theirs:

- :func:`register_backend` maps a name to an ``LMClient`` class or factory (or a lazy
  ``"module:attr"`` string): ``make_client("name", kwargs)`` calls it with ``**kwargs``.
- :func:`register_adapter` teaches ``make_client`` a kind of model object (say, a chat
  model of some framework): ``accepts(obj)`` says whether it applies and
  ``factory(obj, **kwargs)`` wraps the object in an ``LMClient``.

An integration registers itself when imported. So that ``RLM(backend=some_model)`` works
without importing the integration first, a distribution can also declare an entry point
in the ``rlm_engine.clients`` group naming a callable that takes no arguments and does
the registering::

    [project.entry-points."rlm_engine.clients"]
    myintegration = "my_package.client:register"

Entry points are loaded once, lazily: only when ``make_client`` meets a name or an
object that nothing registered so far knows. One that fails to load (its optional
dependencies are missing, say) is skipped and reported in the error that follows.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from rlm_engine.clients.base import LMClient

ENTRY_POINT_GROUP = "rlm_engine.clients"

#: A client factory: an ``LMClient`` subclass or any callable returning an ``LMClient``.
ClientFactory = Callable[..., LMClient]

#: Registered backend names: a factory, or ``"module:attr"`` imported on first use.
BACKENDS: dict[str, str | ClientFactory] = {
    "openai": "rlm_engine.clients.openai:OpenAIClient",
    "anthropic": "rlm_engine.clients.anthropic:AnthropicClient",
    "scripted": "rlm_engine.clients.scripted:ScriptedClient",
    "vllm": "rlm_engine.clients.local:VLLMClient",
    "llamacpp": "rlm_engine.clients.local:LlamaCppClient",
    "azure": "rlm_engine.clients.azure:AzureOpenAIClient",
    "openrouter": "rlm_engine.clients.openrouter:OpenRouterClient",
    "portkey": "rlm_engine.clients.portkey:PortkeyClient",
    "gemini": "rlm_engine.clients.gemini:GeminiClient",
    "litellm": "rlm_engine.clients.litellm:LiteLLMClient",
}


@dataclass(frozen=True)
class Adapter:
    """Wraps model objects that ``accepts`` in an ``LMClient`` via ``factory(obj, **kw)``."""

    name: str
    accepts: Callable[[object], bool]
    factory: ClientFactory
    description: str


#: Registered adapters by name, tried in registration order.
ADAPTERS: dict[str, Adapter] = {}

_lock = threading.RLock()  # a plugin's hook may itself reach make_client
_entry_points_loaded = False
#: Entry points that failed to load: name -> why (and which extra would provide them).
_entry_point_errors: dict[str, str] = {}


def register_backend(name: str, target: str | ClientFactory) -> None:
    """Make ``make_client(name, kwargs)`` call ``target(**kwargs)``.

    ``target`` is an ``LMClient`` class, a callable returning one, or a
    ``"module:attr"`` string naming either (imported on first use). Registering a name
    again replaces it.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"A backend name must be a non-empty string, got {name!r}")
    if not (callable(target) or (isinstance(target, str) and ":" in target)):
        raise TypeError(f"Backend {name!r} needs a factory or a 'module:attr' string")
    BACKENDS[name] = target


def register_adapter(
    name: str,
    accepts: Callable[[object], bool],
    factory: ClientFactory,
    *,
    description: str | None = None,
) -> None:
    """Make ``make_client(obj, kwargs)`` return ``factory(obj, **kwargs)`` when ``accepts(obj)``.

    ``description`` says what the adapter takes (shown when no adapter accepts an
    object). Registering a name again replaces that adapter.
    """
    ADAPTERS[name] = Adapter(name, accepts, factory, description or name)


def make_client(backend: Any, kwargs: dict[str, Any] | None = None) -> LMClient:
    """An ``LMClient`` from an ``LMClient``, a backend name, or a model object an adapter takes."""
    kwargs = dict(kwargs or {})
    if isinstance(backend, LMClient):
        return backend
    if isinstance(backend, str):
        return backend_factory(backend)(**kwargs)
    adapter = _adapter_for(backend)
    if adapter is None:
        load_entry_points()
        adapter = _adapter_for(backend)
    if adapter is None:
        kinds = [f"a backend name ({', '.join(BACKENDS)})", "an LMClient"]
        kinds += [a.description for a in ADAPTERS.values()]
        note = _entry_point_note() or (
            " Other model objects need an installed integration that registers an adapter"
            " for them (rlm_engine.clients.register_adapter)."
        )
        raise TypeError(
            f"backend must be {', '.join(kinds[:-1])} or {kinds[-1]}; got {backend!r}." + note
        )
    return adapter.factory(backend, **kwargs)


def backend_factory(name: str) -> ClientFactory:
    """The factory registered for the backend ``name`` (imported on first use)."""
    if name not in BACKENDS:
        load_entry_points()
    if name not in BACKENDS:
        raise ValueError(
            f"Unknown backend {name!r}. Choose one of: {', '.join(BACKENDS)}." + _entry_point_note()
        )
    return _resolve(name, BACKENDS[name])


def load_entry_points() -> None:
    """Load the ``rlm_engine.clients`` entry points once (``make_client`` does it lazily)."""
    global _entry_points_loaded
    with _lock:
        if _entry_points_loaded:
            return
        _entry_points_loaded = True
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                hook = ep.load()
                if callable(hook):
                    hook()
            except Exception as e:  # a broken or uninstallable plugin must not break the engine
                _entry_point_errors[ep.name] = f"{type(e).__name__}: {e}{_install_hint(ep)}"


def _adapter_for(backend: object) -> Adapter | None:
    for adapter in list(ADAPTERS.values()):
        if adapter.accepts(backend):
            return adapter
    return None


def _resolve(name: str, target: str | ClientFactory) -> ClientFactory:
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    try:
        factory: ClientFactory = getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise ImportError(
            f"Backend {name!r} ({target}) needs an optional dependency: {e}. "
            "Install the extra of the package that provides it."
        ) from e
    return factory


def _install_hint(ep: metadata.EntryPoint) -> str:
    """``; install `dist[extra]``` when the entry point's distribution has an extra of its name."""
    dist = ep.dist
    if dist is None:
        return ""
    extras = dist.metadata.get_all("Provides-Extra") or []
    if ep.name in extras:
        return f"; install `{dist.metadata['Name']}[{ep.name}]`"
    return ""


def _entry_point_note() -> str:
    if not _entry_point_errors:
        return ""
    failed = "; ".join(f"{name} ({why})" for name, why in _entry_point_errors.items())
    return f" Integrations that could not load: {failed}."


__all__ = [
    "ADAPTERS",
    "BACKENDS",
    "ENTRY_POINT_GROUP",
    "Adapter",
    "ClientFactory",
    "LMClient",
    "backend_factory",
    "load_entry_points",
    "make_client",
    "register_adapter",
    "register_backend",
]
