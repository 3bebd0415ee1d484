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
from typing import Any, Self, Union

from rlm_engine.environments.options import OptionSpec, check_options, options_of
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

    #: Short name shown in results and traces ("local", "subprocess", ...); a subclass
    #: without one is shown by its class name.
    kind: str = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # Every way of making an environment (by name, by class, directly) checks its options
        # by name and type first, so a bad one fails here, not inside a running cell.
        validate_options(cls, args, kwargs)
        return super().__new__(cls)

    def __init__(
        self, timeout: float | None = None, max_output_chars: int = 1_000_000, **unknown: object
    ) -> None:
        # Subclasses pass on the keywords they do not take. Options of other environment
        # kinds are ignored (``__new__`` checked them), so one ``environment_kwargs`` serves
        # every kind (``kill_grace`` for ``local``, say).
        self.timeout = timeout
        self.max_output_chars = max_output_chars

    @property
    def name(self) -> str:
        """Which environment this is, as results, traces and progress output name it."""
        return self.kind or type(self).__name__

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


def known_environment_classes() -> set[type[Environment]]:
    """The built-in environments and every other loaded subclass."""
    from rlm_engine.environments import available_environments  # imports this module

    classes: set[type[Environment]] = set(available_environments().values())
    pending = Environment.__subclasses__()
    while pending:
        cls = pending.pop()
        if not inspect.isabstract(cls):
            classes.add(cls)
        pending.extend(cls.__subclasses__())
    return classes


def options_of_others(own: dict[str, OptionSpec]) -> dict[str, OptionSpec]:
    """Options other environments take that ``own`` does not (accepted and type-checked).

    A name several environments declare with different types (``python``: ``str | None``
    for subprocess, ``str`` for docker) takes a value any of them takes: the check must
    not depend on the order classes come out of a set.
    """
    hints: dict[str, list[Any]] = {}
    specs: dict[str, OptionSpec] = {}
    for klass in sorted(known_environment_classes(), key=lambda c: c.__qualname__):
        for key, spec in options_of(klass).items():
            if key not in own:
                specs.setdefault(key, spec)
                if spec.hint not in hints.setdefault(key, []):
                    hints[key].append(spec.hint)
    return {
        key: spec if len(hints[key]) == 1 else spec._replace(hint=Union[tuple(hints[key])])  # noqa: UP007
        for key, spec in specs.items()
    }


def validate_options(cls: type[Environment], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """``TypeError`` naming the problem and the valid options, for ``cls(*args, **kwargs)``."""
    own = options_of(cls)
    positional = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ][1:]
    given = dict(zip(positional, args, strict=False))
    given.update(kwargs)
    check_options(cls.__name__, own, options_of_others(own), given)
