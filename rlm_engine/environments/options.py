"""Environment options, checked by name and type before anything starts.

Options arrive as ``environment_kwargs`` from Python, from ``RLMChatModel`` fields and from
``rlm run --env-opt KEY=VALUE`` (where ``timeout=abc`` is a string), so a wrong type must
be caught where it enters, with a message that lists what is valid, instead of surfacing
later as a ``TypeError`` deep inside a running cell. The options and their types are read
from the ``__init__`` signatures of the environment classes, so a new option is checked
as soon as it is declared.

One ``environment_kwargs`` may serve several kinds (``kill_grace`` given to ``local``, say),
so a name some other environment takes is accepted and checked against that one's type.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from typing import Any

#: Parameter names that are not options (``self`` and catch-all keywords).
_SKIP = {"self", "args", "kw", "kwargs", "unknown"}


class OptionSpec(typing.NamedTuple):
    name: str
    hint: Any  # the resolved annotation
    owner: type  # the class whose __init__ declares it

    def describe(self) -> str:
        return f"{self.name} ({type_name(self.hint)})"


@functools.cache
def options_of(cls: type) -> dict[str, OptionSpec]:
    """Keyword options ``cls`` takes, from its own ``__init__`` and its bases'."""
    found: dict[str, OptionSpec] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # unresolvable annotations: names only, no type check
            hints = {}
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(init).parameters.values():
            if p.kind in named and p.name not in _SKIP:
                found[p.name] = OptionSpec(p.name, hints.get(p.name, Any), klass)
    return found


def type_name(hint: Any) -> str:
    if hint is Any:
        return "any"
    if hint is type(None):
        return "None"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(hint))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(hint))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(hint, "__name__", str(hint))


def matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits ``hint`` (the shapes environment options use)."""
    if hint is Any or hint is object:
        return True
    if hint is type(None) or hint is None:
        return value is None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in typing.get_args(hint))
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is dict:
        if not isinstance(value, dict):
            return False
        key_t, value_t = typing.get_args(hint) or (Any, Any)
        return all(matches(k, key_t) and matches(v, value_t) for k, v in value.items())
    if origin in (list, tuple):
        (item_t, *_) = typing.get_args(hint) or (Any,)
        return isinstance(value, list | tuple) and all(matches(v, item_t) for v in value)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation we cannot check (a protocol, a string)


def check_options(
    label: str, own: dict[str, OptionSpec], others: dict[str, OptionSpec], given: dict[str, Any]
) -> None:
    """Raise ``TypeError`` for a name no environment takes or a value of the wrong type.

    ``own`` are the options of the environment being made (listed in the message),
    ``others`` those of every other environment (accepted, and type-checked, too).
    """
    unknown = sorted(k for k in given if k not in own and k not in others)
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        raise TypeError(f"{label} got unknown option(s): {names}. {_valid(label, own)}")
    for key, value in given.items():
        spec = own.get(key) or others[key]
        if not matches(value, spec.hint):
            raise TypeError(
                f"{label} option {key!r} must be {type_name(spec.hint)}, got "
                f"{type(value).__name__} {value!r:.80}. {_valid(label, own)}"
            )


def _valid(label: str, own: dict[str, OptionSpec]) -> str:
    return f"Valid options of {label}: " + ", ".join(s.describe() for s in own.values()) + "."


__all__ = ["OptionSpec", "check_options", "matches", "options_of", "type_name"]
