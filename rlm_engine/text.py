"""The one rule for text entering the engine: plain ``str`` that UTF-8 can encode.

Why it exists: a Python ``str`` may hold lone surrogates (``'\\ud800'``; ``'\\udcff'`` from
bytes decoded with ``surrogateescape``, as ``sys.stdin`` does under a non-UTF-8 locale).
UTF-8 cannot encode them, and everything the engine writes speaks UTF-8: the trajectory
logger, the HTTP clients (every sub-call carrying such a chunk failed), the workers'
context files. And ``str`` subclasses (langchain-core's ``TextAccessor``) must reach the
REPL and the root's description of ``context`` as what they are: ``str``.

So every text that enters the engine (context, query, LM replies, REPL output, sub-call
prompts) goes through :func:`clean_text` / :func:`clean_value` once, at the boundary.
A surrogate pair (a high one followed by a low one, as UTF-16 would hold an emoji) is
joined into its character; every other surrogate becomes U+FFFD, as ``errors="replace"``
does for undecodable bytes. Text that needs no change is returned as is (no copy), and
ASCII text costs nothing to check.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT_CHARACTER = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` as a plain ``str`` without lone surrogates (see the module docs)."""
    if type(text) is not str:
        # A plain copy of a subclass; str.__str__ does not call an overridden __str__.
        text = str.__str__(text)
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    # UTF-16 holds each surrogate as one code unit: decoding joins pairs and replaces the rest.
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def clean_value(value: Any) -> Any:
    """``value`` with :func:`clean_text` applied to every ``str`` in it.

    Lists, tuples and dicts (keys too) are walked at any depth. A container is rebuilt (as a
    plain ``list``/``tuple``/``dict``) only when something in it changed; otherwise the same
    object comes back, so a large context is never copied for nothing. Other objects are
    returned as they are.
    """
    return _clean(value, {})


def _clean(value: Any, seen: dict[int, Any]) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if not isinstance(value, list | tuple | dict):
        return value
    key = id(value)
    if key in seen:  # a container that holds itself: keep the cycle as it is
        return seen[key]
    seen[key] = value
    changed = False
    cleaned: Any
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            ck, cv = _clean(k, seen), _clean(v, seen)
            changed = changed or ck is not k or cv is not v
            items.append((ck, cv))
        cleaned = dict(items) if changed else value
    else:
        elements = []
        for v in value:
            cv = _clean(v, seen)
            changed = changed or cv is not v
            elements.append(cv)
        rebuilt = tuple(elements) if isinstance(value, tuple) else elements
        cleaned = rebuilt if changed else value
    seen[key] = cleaned
    return cleaned


def is_blank(value: Any) -> bool:
    """True when ``value`` holds no material: None, a str of only whitespace, or a list,
    tuple or dict whose every element (dict: every value) is blank, at any depth.

    A dict's keys are labels, not material: ``{"doc": ""}`` is blank. Numbers, booleans
    and other objects are material (``0`` is an answerable context).
    """
    stack = [value]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if item is None:
            continue
        if isinstance(item, str):
            if item and not item.isspace():
                return False
            continue
        if isinstance(item, list | tuple | dict):
            if id(item) in seen:
                continue
            seen.add(id(item))
            if isinstance(item, dict):
                stack.extend(item.values())
            else:
                stack.extend(item)
            continue
        return False
    return True


__all__ = ["REPLACEMENT_CHARACTER", "clean_text", "clean_value", "is_blank"]
