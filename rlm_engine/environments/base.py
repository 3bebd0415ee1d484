"""The REPL protocol every execution environment implements.

The engine only talks to this interface, so a new sandbox is one file. Host functions
(``llm_query``, ``rlm_query``, bound tools, ...) are async callables that run in the host
process; an environment makes them callable by name from REPL code and must keep batched
calls concurrent (one host call carrying the whole batch).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rlm_engine.types import ExecResult

# Names the environment itself provides inside the REPL (not host functions).
BUILTIN_NAMES = ("context", "FINAL", "FINAL_VAR", "SHOW_VARS")


@dataclass
class HostFunction:
    """A function REPL code can call; it runs on the host, in the engine's event loop.

    ``fn`` receives the positional and keyword arguments the code passed. Arguments and
    results must be JSON-serializable so isolated workers can forward them over a pipe.
    """

    name: str
    fn: Callable[..., Awaitable[Any]]
    doc: str = ""


class Environment(ABC):
    """A persistent Python REPL holding ``context``.

    Lifecycle: ``await start(context, functions)`` once, ``await execute(code)`` per
    cell (state persists between cells), ``await close()`` always (also on error).
    """

    #: True when generated code runs in the host process (no isolation at all).
    in_process: bool = False

    def __init__(
        self, timeout: float | None = None, max_output_chars: int = 1_000_000, **unknown: object
    ) -> None:
        # Subclasses pass on the keywords they do not take. Options of other environment
        # kinds are ignored, so one ``environment_kwargs`` serves every kind (``kill_grace``
        # for ``local``, say); a name no environment takes is a mistake.
        if unknown and (misspelled := sorted(set(unknown) - _options_of_any_environment())):
            names = ", ".join(repr(k) for k in misspelled)
            raise TypeError(f"{type(self).__name__} got unknown option(s): {names}")
        self.timeout = timeout
        self.max_output_chars = max_output_chars

    @abstractmethod
    async def start(
        self, context: Any, functions: dict[str, HostFunction], setup: str | None = None
    ) -> None:
        """Load ``context`` (once per completion) and expose ``functions`` by name.

        ``setup`` is standard-library Python run right after the context is loaded, and
        again whenever the REPL is restarted (a crashed worker), so what it defines is
        always there. Functions and classes it defines are hidden from ``SHOW_VARS`` like
        the built-in REPL functions; data it binds stays visible. A setup that fails raises.
        """

    @abstractmethod
    async def execute(self, code: str, timeout: float | None = None) -> ExecResult:
        """Run one cell. ``timeout`` overrides the per-cell timeout (seconds)."""

    @abstractmethod
    async def get_variable(self, name: str) -> tuple[bool, str]:
        """``(found, str(value))`` of a REPL variable, for ``FINAL_VAR(name)`` in text."""

    @abstractmethod
    async def list_variables(self) -> dict[str, str]:
        """User-visible variable names mapped to their type names."""

    @abstractmethod
    async def close(self) -> None:
        """Release everything (threads, processes, containers). Idempotent."""


def _options_of_any_environment() -> set[str]:
    """Keyword options of the built-in environments and of every other loaded subclass."""
    from rlm_engine.environments import available_environments  # imports this module

    classes: set[type[Environment]] = set(available_environments().values())
    pending = Environment.__subclasses__()
    while pending:
        cls = pending.pop()
        classes.add(cls)
        pending.extend(cls.__subclasses__())
    names: set[str] = set()
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    for cls in classes:
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is not None:
                params = inspect.signature(init).parameters.values()
                names.update(p.name for p in params if p.kind in named)
    names.discard("self")
    return names
