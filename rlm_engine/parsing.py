"""Reading the root LM's response: code blocks and the FINAL / FINAL_VAR line.

Models are sloppy, so parsing is forgiving: ```repl, ```python and ```py blocks all run,
FINAL answers may contain parentheses and span lines, and an unclosed FINAL( still ends
the run with what follows it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Literal

_FENCE = re.compile(
    r"^[ \t]*```[ \t]*(repl|python3?|py)[ \t]*\n(.*?)^[ \t]*```[ \t]*$",
    re.DOTALL | re.MULTILINE | re.IGNORECASE,
)
_ANY_FENCE = re.compile(r"^[ \t]*```[^\n]*\n.*?^[ \t]*```[ \t]*$", re.DOTALL | re.MULTILINE)
_FINAL_START = re.compile(r"^[ \t]*(FINAL_VAR|FINAL)\(", re.MULTILINE)


@dataclass(frozen=True)
class FinalDirective:
    kind: Literal["FINAL", "FINAL_VAR"]
    value: str  # the answer (FINAL) or the variable name (FINAL_VAR)


def find_code_blocks(text: str) -> list[str]:
    """Code of every runnable fenced block, in order."""
    return [m.group(2) for m in _FENCE.finditer(text)]


def strip_code_blocks(text: str) -> str:
    """The response without any fenced block, so FINAL inside code is not read as text."""
    return _ANY_FENCE.sub("", text)


def _balanced_end(s: str, start: int) -> int | None:
    """Index of the ``)`` closing the ``(`` just before ``start``, skipping quoted strings."""
    depth = 1
    i = start
    quote: str | None = None
    while i < len(s):
        c = s[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if s.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
        elif s.startswith(('"""', "'''"), i):
            quote = s[i : i + 3]
            i += 3
            continue
        elif c in "\"'" and _looks_like_literal_start(s, i):
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _looks_like_literal_start(s: str, i: int) -> bool:
    # An apostrophe inside prose ("don't") is not a string literal.
    prev = s[i - 1] if i else ""
    return not prev.isalnum()


def find_final(text: str) -> FinalDirective | None:
    """The last FINAL(...) / FINAL_VAR(...) that starts a line outside code blocks."""
    prose = strip_code_blocks(text)
    matches = list(_FINAL_START.finditer(prose))
    if not matches:
        return None
    m = matches[-1]
    kind = m.group(1)
    body_start = m.end()
    rest = prose[body_start:]
    end = _balanced_end(prose, body_start)
    last_close = rest.rstrip().rfind(")")
    if end is not None and prose[end + 1 :].strip() == "":
        inner = prose[body_start:end]
    elif last_close >= 0 and rest.rstrip().endswith(")"):
        # Unbalanced parentheses inside the answer: the answer runs to the last ")".
        inner = rest.rstrip()[:last_close]
    elif end is not None:
        inner = prose[body_start:end]
    else:
        inner = rest  # unclosed FINAL( : take everything after it
    inner = inner.strip()
    if kind == "FINAL_VAR":
        return FinalDirective("FINAL_VAR", _unquote(inner).strip())
    return FinalDirective("FINAL", _unquote(inner))


def _unquote(s: str) -> str:
    """``FINAL("42")`` means 42: unwrap a single string literal, keep anything else as is."""
    if len(s) >= 2 and s[0] in "\"'" and s[-1] == s[0] or s[:3] in ('"""', "'''"):
        try:
            value = ast.literal_eval(s)
        except (ValueError, SyntaxError):
            return s
        if isinstance(value, str):
            return value
    return s


def truncate_output(text: str, limit: int) -> str:
    """Keep the head and tail of long REPL output and say how much was cut."""
    if limit <= 0 or len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n\n[... {cut:,} characters truncated ...]\n\n{text[-tail:]}"
