"""Shared data for the LangGraph tests (importable from test modules and workers)."""

from __future__ import annotations

QUESTION = "What is the secret code?"
ANSWER = "4711"


def make_haystack(lines: int = 20_000) -> str:
    """~700 KB of filler with one needle in the middle: 15 chunks for the scripted root."""
    head = "\n".join(f"line {i}: nothing to see here" for i in range(lines))
    tail = "\n".join(f"more {i}: still nothing" for i in range(lines))
    return f"{head}\nThe secret code is {ANSWER}.\n{tail}"
