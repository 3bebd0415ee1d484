"""``custom_tools`` of the paper authors' library as engine host functions and REPL values.

Their dict maps a name to a function, to ``{"tool": fn, "description": "..."}``, or to a
plain value that becomes a REPL variable. Functions become :class:`HostFunction` s (they
run on the host, so they work in isolated environments too; a plain function runs in a
worker thread so it cannot stall the run); values are written into the REPL set-up code,
which the engine re-runs after a worker restart, so they are always there.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rlm_engine.environments import HostFunction

#: Names the REPL itself defines; a tool may not take them.
RESERVED = frozenset(
    {
        "llm_query",
        "llm_query_batched",
        "rlm_query",
        "rlm_query_batched",
        "context",
        "history",
        "answer",
        "FINAL",
        "FINAL_VAR",
        "SHOW_VARS",
    }
)


@dataclass
class ReplTools:
    """What ``custom_tools`` become: host functions, their prompt doc, and set-up code."""

    functions: dict[str, HostFunction] = field(default_factory=dict)
    doc: str = ""
    setup: str = ""


def _host_function(name: str, fn: Callable[..., Any], description: str) -> HostFunction:
    if inspect.iscoroutinefunction(fn):

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await fn(*args, **kwargs)

    else:

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(fn, *args, **kwargs)

    return HostFunction(name, call, description)


def _literal(name: str, value: Any) -> str:
    """``value`` as Python source that rebuilds it, or a TypeError saying what fits."""
    text = repr(value)
    try:
        same = ast.literal_eval(text) == value
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        same = False
    if not same:
        raise TypeError(
            f"custom_tools[{name!r}] is a {type(value).__name__}, which cannot be copied into "
            "the REPL. Give a function, {'tool': function, 'description': ...}, or a plain "
            "value (str, number, bool, None, or lists/tuples/dicts of them)."
        )
    return f"{name} = {text}"


def _signature(name: str, fn: Callable[..., Any]) -> str:
    try:
        return f"{name}{inspect.signature(fn, eval_str=True)}"
    except Exception:  # unresolvable annotations: the signature as written, else none
        try:
            return f"{name}{inspect.signature(fn)}"
        except (TypeError, ValueError):
            return f"{name}(...)"


def repl_tools(custom_tools: Mapping[str, Any] | None) -> ReplTools:
    """Translate ``custom_tools``; a reserved name or a value that cannot be copied raises."""
    out = ReplTools()
    if not custom_tools:
        return out
    lines = ["Also available in the REPL (functions run on the host):"]
    setup = []
    for name, spec in custom_tools.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"custom_tools key {name!r} is not a Python identifier")
        if name in RESERVED:
            raise ValueError(
                f"custom_tools cannot define {name!r}: the REPL defines it. Reserved names: "
                f"{', '.join(sorted(RESERVED))}."
            )
        description = ""
        value = spec
        if isinstance(spec, Mapping) and "tool" in spec:
            value, description = spec["tool"], str(spec.get("description") or "")
        if callable(value):
            out.functions[name] = _host_function(name, value, description)
            lines.append(
                f"- `{_signature(name, value)}`" + (f": {description}" if description else "")
            )
        else:
            setup.append(_literal(name, value))
            kind = type(value).__name__
            lines.append(
                f"- `{name}` ({kind} variable)" + (f": {description}" if description else "")
            )
    out.doc = "\n".join(lines)
    out.setup = "\n".join(setup)
    return out


__all__ = ["RESERVED", "ReplTools", "repl_tools"]
