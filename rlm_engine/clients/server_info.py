"""What an OpenAI-compatible server says about itself: the model's window and chat template.

A window is a fact to read, not a constant to assume: vLLM lists ``max_model_len`` with
each model at ``/v1/models``; llama.cpp's server reports the window it was started with
(``n_ctx``) and its chat template at ``/props``, and the model's trained window
(``meta.n_ctx_train``) at ``/v1/models``; OpenRouter and LM Studio list
``context_length``. Both vLLM's and llama.cpp's windows hold the prompt and the reply
together, so a client that knows one can lower its reply cap to the room the prompt
leaves (``rlm_engine.windows.reply_room``).

Asking costs two small GETs, once per client, with a short bound: a server that answers
neither (llama-cpp-python, Ollama's OpenAI API, a proxy) leaves the window unknown and
nothing fails. Stdlib only, so it runs from sync code and threads alike.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rlm_engine.clients.base import shared_ssl_context

#: Seconds both GETs together may take: these servers answer in milliseconds, and an
#: unknown window is not an error.
PROBE_TIMEOUT = 3.0
_MAX_BODY = 1 << 22  # a model list is kilobytes; OpenRouter's is about 1 MB


@dataclass(frozen=True)
class ServerInfo:
    """What a server reported; ``None`` where it did not say."""

    #: Tokens of prompt and reply together the server accepts for the model.
    window: int | None = None
    #: Where ``window`` came from, for messages and the trace ("vLLM /v1/models max_model_len").
    source: str | None = None
    #: The chat template the server applies (llama.cpp ``/props``).
    chat_template: str | None = None


def window_from_models(body: Any, model: str | None) -> tuple[int, str] | None:
    """The window of ``model`` (else of the first model listed) in a ``/models`` answer."""
    data = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(data, list) or not data:
        return None
    entries = [m for m in data if isinstance(m, Mapping)]
    chosen = next((m for m in entries if model and m.get("id") == model), None)
    if chosen is None:
        if model and len(entries) > 1:
            return None  # another model's window would be a guess
        chosen = entries[0] if entries else None
    if chosen is None:
        return None
    for key, source in (
        ("max_model_len", "/models max_model_len (vLLM)"),
        ("context_length", "/models context_length"),
    ):
        value = chosen.get(key)
        if isinstance(value, int) and value > 0:
            return value, source
    meta = chosen.get("meta")
    trained = meta.get("n_ctx_train") if isinstance(meta, Mapping) else None
    if isinstance(trained, int) and trained > 0:
        return trained, "/models meta.n_ctx_train (llama.cpp)"
    return None


def props_facts(body: Any) -> tuple[int | None, str | None]:
    """``(n_ctx, chat_template)`` from llama.cpp's ``/props``."""
    if not isinstance(body, Mapping):
        return None, None
    settings = body.get("default_generation_settings")
    n_ctx = settings.get("n_ctx") if isinstance(settings, Mapping) else None
    if not isinstance(n_ctx, int):
        n_ctx = body.get("n_ctx") if isinstance(body.get("n_ctx"), int) else None
    template = body.get("chat_template")
    return (n_ctx if n_ctx and n_ctx > 0 else None), (
        template if isinstance(template, str) else None
    )


def _get_json(url: str, headers: Mapping[str, str], deadline: float) -> Any:
    """GET ``url`` as JSON, all of it before ``deadline`` (``time.monotonic``): a server
    that trickles its body a byte at a time restarts a read timeout, never this bound."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    context = shared_ssl_context() if url.startswith("https") else None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(url)
    with urllib.request.urlopen(request, timeout=min(remaining, 1.0), context=context) as resp:
        body = bytearray()
        while chunk := resp.read1(65536):
            body += chunk
            if time.monotonic() > deadline or len(body) > _MAX_BODY:
                raise TimeoutError(url)
    return json.loads(bytes(body))


def server_root(base_url: str) -> str:
    """``base_url`` without a trailing ``/v1`` (where llama.cpp serves ``/props``)."""
    parts = urlsplit(base_url.rstrip("/"))
    path = parts.path[: -len("/v1")] if parts.path.endswith("/v1") else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def probe(
    base_url: str,
    model: str | None,
    headers: Mapping[str, str] | None = None,
    timeout: float = PROBE_TIMEOUT,
    *,
    props: bool = True,
) -> ServerInfo:
    """Ask the server at ``base_url`` (an OpenAI base URL, ending in ``/v1`` usually) for
    ``model``'s window and chat template. Never raises: what it cannot learn stays None.

    llama.cpp's ``/props`` ``n_ctx`` (the window it runs with) wins over the trained
    window its ``/models`` lists; per-slot windows are what a request gets.
    """
    headers = dict(headers or {})
    deadline = time.monotonic() + timeout
    listed: tuple[int, str] | None = None
    n_ctx: int | None = None
    template: str | None = None
    with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
        listed = window_from_models(
            _get_json(base_url.rstrip("/") + "/models", headers, deadline), model
        )
    with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
        if props:  # llama.cpp's; ``props=False`` for services known not to have it
            n_ctx, template = props_facts(
                _get_json(server_root(base_url) + "/props", headers, deadline)
            )
    if n_ctx is not None:
        return ServerInfo(n_ctx, "/props n_ctx (llama.cpp)", template)
    if listed is not None:
        return ServerInfo(listed[0], listed[1], template)
    return ServerInfo(chat_template=template)


__all__ = [
    "PROBE_TIMEOUT",
    "ServerInfo",
    "probe",
    "props_facts",
    "server_root",
    "window_from_models",
]
