"""What a tracer may show of a run: the trajectory log's rules, for every tracing backend.

LangChain run trees, OpenTelemetry spans and DSPy callbacks are built from the engine's
progress events (``RLMConfig.observe.on_event``). Events are bounded already (a sub-call's
prompt keeps its head and tail, REPL output is what the root saw), but traces leave the
process, often to a hosted service, so every text passes through :class:`TraceText` first:
known secrets are redacted (``rlm_engine.logger.redact``: API keys in the environment or
given to the clients, ``sk-...`` / ``AKIA...`` patterns) and long text keeps its head and
tail only. The context itself is never in an event, so a 1 GB context never reaches a trace.
"""

from __future__ import annotations

from typing import Any

from rlm_engine.logger import _known_secrets, redact

#: Characters of one text kept in a trace (code, REPL output, a prompt, an answer).
TRACE_TEXT_CHARS = 4_000
_TAIL = 1_000


def clip(text: str, limit: int = TRACE_TEXT_CHARS) -> str:
    """``text`` with its head and tail only when longer than ``limit``."""
    if len(text) <= limit:
        return text
    head = max(limit - _TAIL, 0)
    omitted = len(text) - head - _TAIL
    return f"{text[:head]}\n[... {omitted:,} characters omitted ...]\n{text[-_TAIL:]}"


class TraceText:
    """Redacts and clips texts for one run's trace; secrets are read once, at the start."""

    def __init__(self, secrets: list[str] | None = None, limit: int = TRACE_TEXT_CHARS) -> None:
        self.secrets = [s for s in (secrets or []) if s and len(s) >= 8] + _known_secrets()
        self.limit = limit

    def __call__(self, value: Any) -> str:
        text = value if isinstance(value, str) else ("" if value is None else str(value))
        return redact(clip(text, self.limit), self.secrets)


def config_secrets(config: Any) -> list[str]:
    """The API keys a configuration holds (they may not be in the environment)."""
    models = getattr(config, "models", None)
    keys = [getattr(models, "api_key", None)]
    for kwargs in (
        getattr(models, "backend_kwargs", None),
        getattr(models, "sub_backend_kwargs", None),
    ):
        if isinstance(kwargs, dict):
            keys.append(kwargs.get("api_key"))
    return [k for k in keys if isinstance(k, str)]


__all__ = ["TRACE_TEXT_CHARS", "TraceText", "clip", "config_secrets"]
