"""Helpers shared by the DSPy tests (data builders, request capture)."""

from __future__ import annotations

from rlm_engine.scripted import Request

NEEDLE_LINE = 600


def haystack(needle: str, lines: int = 800, at: int = NEEDLE_LINE) -> str:
    """About 40,000 characters of filler with ``needle`` on line ``at``."""
    rows = [f"Line {i}: the weather was calm and nothing happened." for i in range(lines)]
    rows.insert(at, needle)
    return "\n".join(rows)


def is_rlm_turn(req: Request) -> bool:
    """A DSPy request for an RLM root turn (ChatAdapter format)."""
    return "`repl_history`" in req.system and "[[ ## code ## ]]" in req.system


def chat_reply(**fields: str) -> str:
    """A ChatAdapter-formatted answer with these output fields."""
    parts = [f"[[ ## {k} ## ]]\n{v}" for k, v in fields.items()]
    return "\n\n".join([*parts, "[[ ## completed ## ]]"])
