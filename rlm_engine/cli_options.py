"""``rlm run``'s flags for the engine options, generated from :mod:`rlm_engine.config`.

Every scalar option is a flag named after it (``max_total_tokens`` -> ``--max-total-tokens``,
booleans get ``--no-...``) with the option's doc as help, so a new option is a flag at
once. Options a command line spells its own way are in :data:`IDIOMS`; those it cannot
take (Python callables) are in :data:`NOT_FLAGS` with the reason.

A whole-run limit that may be None (the budgets, ``run_timeout``) also takes the value
``none``, which removes it: ``--max-llm-calls none``. The budgets are on by default, so
this is how a command line lifts one.
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rlm_engine.config import MODES, OPTION_GROUP, OptionInfo, RLMConfig, options
from rlm_engine.environments import NAMES as ENVIRONMENTS  # every name make_environment takes

#: Options a command line cannot take, and why.
NOT_FLAGS: dict[str, str] = {
    "tools": "host functions are Python callables: use the Python API",
    "tools_doc": "documents tools, which the command line cannot take",
    "on_event": "a Python callback: rlm run shows progress itself (--quiet to hide it)",
    "tracer_provider": "an object: set the standard OTEL_* exporter variables instead",
}

#: Options whose flag is not the generated one: option -> (flags, argparse keywords).
#: ``backend`` is chosen by ``rlm_engine.cli.choose_backend`` (``--backend`` or the keys
#: set in the environment); ``api_key`` is read from a variable, never typed on a command
#: line where ``ps`` and shell history would show it.
IDIOMS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "backend": (
        ("--backend",),
        {
            "help": "default: openai if OPENAI_API_KEY or RLM_API_URL "
            "is set, anthropic if ANTHROPIC_API_KEY is set, else the "
            "offline scripted model"
        },
    ),
    "api_key": (
        ("--api-key-env",),
        {"metavar": "VAR", "dest": "api_key_env", "help": "read the API key from this variable"},
    ),
    "sub_backend": (("--sub-backend",), {"help": "backend of sub-calls (default: the root's)"}),
    "backend_kwargs": (
        ("--backend-opt",),
        {
            "action": "append",
            "metavar": "KEY=VALUE",
            "help": "root client option, repeatable (JSON "
            "values parse: --backend-opt pricing=[1,2])",
        },
    ),
    "sub_backend_kwargs": (
        ("--sub-backend-opt",),
        {"action": "append", "metavar": "KEY=VALUE", "help": "sub-call client option, repeatable"},
    ),
    "environment": (
        ("--environment", "-e"),
        {
            "choices": ENVIRONMENTS,
            "help": "where generated code runs (default: auto = sandbox, else subprocess; "
            "local = in this process, trusted documents only)",
        },
    ),
    "mode": (
        ("--mode",),
        {
            "choices": MODES,
            "help": "rlm (default: the RLM loop), direct (one LM call with the whole context) "
            "or auto (direct when it fits under --direct-threshold, else the loop)",
        },
    ),
    "environment_kwargs": (
        ("--env-opt",),
        {
            "action": "append",
            "metavar": "KEY=VALUE",
            "help": "environment option, repeatable (e.g. image=rlm-sandbox:test for docker)",
        },
    ),
    "repl_setup": (
        ("--repl-setup",),
        {
            "metavar": "FILE",
            "help": "Python file run in the REPL after the context loads and after restarts",
        },
    ),
    "system_prompt": (
        ("--system-prompt",),
        {"metavar": "FILE", "help": "file replacing the root's system prompt template"},
    ),
    "logger": (
        ("--log-dir",),
        {"metavar": "DIR", "dest": "log_dir", "help": "write a .jsonl trace here (see rlm view)"},
    ),
}

#: Short or old spellings of generated flags.
ALIASES: dict[str, tuple[str, ...]] = {
    "model": ("-m",),
    "verbose": ("-v",),
    "timeout": ("--request-timeout",),
}


#: Placeholders in ``--help`` for generated flags that say more than their type.
METAVARS: dict[str, str] = {
    "model": "NAME",
    "sub_model": "NAME",
    "base_url": "URL",
    "timeout": "SECONDS",
    "run_timeout": "SECONDS",
    "max_cost": "USD",
}


#: The value that removes a whole-run limit: ``--max-cost none``.
NO_LIMIT = "none"


class OptionError(ValueError):
    """A flag's value is not valid for its option."""


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _optional(info: OptionInfo) -> bool:
    tp = info.type
    union = isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union
    return union and type(None) in typing.get_args(tp)


def _scalar(info: OptionInfo) -> type | None:
    """``int``/``float``/``str``/``bool`` for options of that type (or that type | None)."""
    tp = info.type
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else None
    return tp if tp in (int, float, str, bool) else None


def removable(info: OptionInfo) -> bool:
    """Whether the option's flag takes ``none``: a whole-run numeric limit that may be None."""
    return info.group == "run" and _optional(info) and _scalar(info) in (int, float)


def _number_or_none(tp: type) -> Callable[[str], int | float | None]:
    def parse(text: str) -> int | float | None:
        if text.strip().lower() == NO_LIMIT:
            return None
        value: int | float = tp(text)
        return value

    parse.__name__ = tp.__name__  # argparse names the type in "invalid int value: 'x'"
    return parse


def _shown(default: Any) -> str:
    """A default as help shows it: ``1,000`` and ``20,000,000`` read at a glance."""
    if isinstance(default, int) and not isinstance(default, bool):
        return f"{default:,}"
    return str(default)


def add_option_flags(parser: argparse.ArgumentParser, backends: Sequence[str]) -> None:
    """One flag per engine option (see the module docstring); ``backends`` are the names
    ``--backend`` and ``--sub-backend`` accept."""
    group = parser.add_argument_group("RLM options (see rlm_engine.config)")
    for name, info in options().items():
        if name in NOT_FLAGS:
            continue
        if name in IDIOMS:
            flags, kwargs = IDIOMS[name]
            kwargs = {"dest": name, "default": None, **kwargs}
            if name in ("backend", "sub_backend"):
                kwargs["choices"] = list(backends)
            group.add_argument(*flags, **kwargs)
            continue
        tp = _scalar(info)
        if tp is None:
            raise TypeError(
                f"Option {name!r} has no command-line form: add it to IDIOMS or NOT_FLAGS "
                "in rlm_engine/cli_options.py"
            )
        notes = [] if info.default is None else [f"default: {_shown(info.default)}"]
        kwargs = {"dest": name, "default": None}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = tp
            kwargs["metavar"] = METAVARS.get(name) or {int: "N", float: "X", str: "TEXT"}[tp]
        if removable(info):
            # Unset stays absent (SUPPRESS), so ``none`` (None) is told apart from no flag.
            kwargs.update(type=_number_or_none(tp), default=argparse.SUPPRESS)
            if info.default is not None:
                kwargs["metavar"] = f"{kwargs['metavar']}|{NO_LIMIT}"
                notes.append(f"{NO_LIMIT} removes it")
        doc = info.doc.replace(" (None: no limit)", "")
        kwargs["help"] = doc + (f" ({'; '.join(notes)})" if notes else "")
        group.add_argument(flag(name), *ALIASES.get(name, ()), **kwargs)


def key_values(pairs: Sequence[str] | None, flag_name: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values are JSON when they parse (numbers, true/false, lists),
    else plain strings (``image=rlm-sandbox:test``)."""
    opts: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"{flag_name} expects KEY=VALUE, got {pair!r}")
        try:
            opts[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            opts[key.strip()] = raw
    return opts


def _read(path: str, flag_name: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as e:
        raise OptionError(f"{flag_name} {path}: {e.strerror or e}") from e


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line (unset flags leave the config's defaults).

    ``backend``, ``api_key`` and ``logger`` are resolved by the command itself (they read
    the environment or create files); everything here is pure and validated.
    """
    opts: dict[str, Any] = {}
    given = vars(args)
    infos = options()
    for name in OPTION_GROUP:
        if name in NOT_FLAGS or name in ("backend", "api_key", "logger"):
            continue
        value: Any = given.get(name)
        if value is None and not (name in given and removable(infos[name])):
            continue  # unset; a removable limit given as ``none`` is None and kept
        if name in ("backend_kwargs", "sub_backend_kwargs", "environment_kwargs"):
            value = key_values(value, IDIOMS[name][0][0])
        elif name in ("repl_setup", "system_prompt"):
            value = _read(value, IDIOMS[name][0][0])
        opts[name] = value
    try:
        RLMConfig(**opts)
    except (TypeError, ValueError) as e:
        raise OptionError(str(e)) from None
    return opts


__all__ = [
    "ALIASES",
    "ENVIRONMENTS",
    "IDIOMS",
    "NOT_FLAGS",
    "NO_LIMIT",
    "OptionError",
    "add_option_flags",
    "flag",
    "key_values",
    "options_from_args",
    "removable",
]
