"""A provider-like prompt cache for the scripted server, so tests and benchmarks measure
prompt caching over real HTTP.

It follows the providers' published rules, simplified to whole characters (4 per token):

- OpenAI caches automatically: a prompt whose first 1,024+ tokens match an earlier
  prompt's reads the matching prefix from the cache, in steps of 128 tokens.
- Anthropic caches only what a request marks: each ``cache_control`` block ends a
  prefix that is written to the cache (``cache_creation_input_tokens``) and read back by a
  later request starting with the same prefix (``cache_read_input_tokens``). Prefixes
  under 1,024 tokens are not cached.

Entries live for the server's life (real caches expire after minutes; tests are shorter).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from rlm_engine.scripted.model import Request, content_text

CHARS_PER_TOKEN = 4
MIN_TOKENS = 1_024
OPENAI_STEP = 128


class PrefixCache:
    """Cached prompt prefixes per model; ``lookup`` answers one request and updates it."""

    def __init__(self, max_entries: int = 512) -> None:
        self._prefixes: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def lookup(self, req: Request) -> tuple[int, int]:
        """``(read_tokens, write_tokens)`` for ``req``."""
        if req.api == "anthropic":
            return self._anthropic(req)
        return self._openai(req)

    def _openai(self, req: Request) -> tuple[int, int]:
        text = _serialize(req.raw.get("messages", []))
        with self._lock:
            known = self._prefixes.setdefault(req.model, [])
            best = max((_common_prefix(text, p) for p in known), default=0)
            known.append(text)
            del known[: -self.max_entries]
        tokens = best // CHARS_PER_TOKEN
        if tokens < MIN_TOKENS:
            return 0, 0
        return tokens - tokens % OPENAI_STEP, 0

    def _anthropic(self, req: Request) -> tuple[int, int]:
        marks = _anthropic_breakpoints(req.raw)
        if not marks:
            return 0, 0
        with self._lock:
            known = self._prefixes.setdefault(req.model, [])
            read = max((len(p) for p in known if any(m.startswith(p) for m in marks)), default=0)
            longest = max(marks, key=len)
            if len(longest) // CHARS_PER_TOKEN >= MIN_TOKENS and longest not in known:
                known.append(longest)
                del known[: -self.max_entries]
                written = len(longest) - read
            else:
                written = 0
        read_tokens = read // CHARS_PER_TOKEN if read // CHARS_PER_TOKEN >= MIN_TOKENS else 0
        return read_tokens, max(0, written // CHARS_PER_TOKEN)


def within(cache: tuple[int, int], prompt_tokens: int) -> tuple[int, int]:
    """``(read, written)`` cut to the prompt they belong to: the prefixes are measured on
    their serialized form (roles and quoting included), which runs a little longer than
    the prompt's own token count, and a provider never reports more cached tokens than
    the prompt has."""
    read = min(cache[0], prompt_tokens)
    return read, min(cache[1], prompt_tokens - read)


def _serialize(messages: list[Any]) -> str:
    return "".join(json.dumps([m.get("role"), content_text(m.get("content"))]) for m in messages)


def _anthropic_breakpoints(body: dict[str, Any]) -> list[str]:
    """The prompt text up to each ``cache_control`` mark (system, then messages)."""
    marks: list[str] = []
    text = ""
    system = body.get("system")
    blocks = [{"type": "text", "text": system}] if isinstance(system, str) else system or []
    for block in blocks:
        text += json.dumps(["system", block.get("text", "")])
        if block.get("cache_control"):
            marks.append(text)
    for msg in body.get("messages", []):
        content = msg.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for part in parts:
            text += json.dumps([msg.get("role"), content_text(part)])
            if isinstance(part, dict) and part.get("cache_control"):
                marks.append(text)
    return marks


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    lo, hi = 0, n  # binary search on the longest equal prefix (string slicing is C-fast)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


__all__ = ["PrefixCache"]
