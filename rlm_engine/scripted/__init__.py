"""The scripted offline model and its OpenAI/Anthropic-compatible HTTP server.

No real LLM is reachable in tests, demos and benchmarks; this package stands in for one::

    from rlm_engine.scripted import ScriptedServer

    with ScriptedServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
        anthropic.Anthropic(base_url=server.url, api_key="unused")

The model behaves like a competent RLM root on simple long-context tasks and like a
keyword-matching reader for sub-calls (see :mod:`rlm_engine.scripted.policy`); rules and
skills override it per test. It also speaks the integrations' prompt formats (LangChain
tool calls and structured output, DSPy) through the standard skills of
:mod:`rlm_engine.scripted.skills`, which every new model has (``ScriptedModel.bare()``
leaves them out).

The server's test controls are public API too: :class:`Fault` (``ScriptedServer.inject``)
makes chosen requests fail like real APIs do, and ``ScriptedServer.stats``
(:class:`ServerStats` of :class:`RequestRecord`) says what the server really saw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rlm_engine.scripted.model import Reply, Request, ScriptedModel

if TYPE_CHECKING:
    from rlm_engine.scripted.faults import Fault
    from rlm_engine.scripted.server import ScriptedServer
    from rlm_engine.scripted.stats import RequestRecord, ServerStats

__all__ = [
    "Fault",
    "Reply",
    "Request",
    "RequestRecord",
    "ScriptedModel",
    "ScriptedServer",
    "ServerStats",
]

_LAZY = {
    "Fault": "rlm_engine.scripted.faults",
    "ScriptedServer": "rlm_engine.scripted.server",
    "RequestRecord": "rlm_engine.scripted.stats",
    "ServerStats": "rlm_engine.scripted.stats",
}


def __getattr__(name: str) -> Any:
    # Lazy so `python -m rlm_engine.scripted.server` does not import the module twice.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
