"""DSPy's ``CodeInterpreter`` protocol on top of our environments.

``dspy.RLM``, ``dspy.CodeAct`` and ``dspy.ProgramOfThought`` execute code through an
interpreter made by ``interpreter_factory``; by default that is a Deno/Pyodide sandbox.
``EngineInterpreterFactory(environment)`` (default ``"auto"``: sandbox, else subprocess;
or ``"local"``, ``"subprocess"``, ``"sandbox"``, ``"docker"``) makes them run in one of this
project's REPLs instead: no Deno, the host's packages (numpy ...) where the
environment allows them, per-cell timeouts that keep the session alive.

How the protocol maps onto an ``Environment``: DSPy tools (``llm_query``, the sandbox dspy
facade, user tools) are looked up by name at call time through one host function, because
DSPy adds tools after the interpreter is created; ``variables`` are fetched from the host
on every ``execute`` (by reference in the ``local`` environment); ``SUBMIT`` hands its values
to the host, which turns them into ``FinalOutput``.
"""

from __future__ import annotations

import ast
import asyncio
import contextvars
import inspect
import keyword
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from dspy.primitives.code_interpreter import CodeExecutionError, CodeInterpreterError, FinalOutput

from rlm_engine.environments import Environment, HostFunction, make_environment

T = TypeVar("T")

CALL_TOOL = "__rlm_call_tool__"
GET_VARS = "__rlm_get_vars__"
SUBMIT_VALUES = "__rlm_submit_values__"
_RESERVED = frozenset({"SUBMIT", "__builtins__", CALL_TOOL, GET_VARS, SUBMIT_VALUES})

_TOOLS_CELL = """\
def __rlm_bind_tool(name):
    def tool(*args, **kwargs):
        return __rlm_call_tool__(name, list(args), dict(kwargs))
    tool.__name__ = tool.__qualname__ = name
    return tool


class __rlm_Submitted(BaseException):
    pass


def SUBMIT(*args, **kwargs):
    \"\"\"Finish: hand the output values to the host and stop this cell.\"\"\"
    __rlm_submit_values__(list(args), dict(kwargs))
    raise __rlm_Submitted()


globals().update({{name: __rlm_bind_tool(name) for name in {names!r}}})
"""
_VARS_CELL = "globals().update(__rlm_get_vars__())"

_INSTRUCTIONS = (
    "Code runs as Python in a persistent REPL ({env} environment of rlm-integrations). "
    "Variables, imports and functions persist between executions. Host tools and SUBMIT are "
    "global functions; SUBMIT ends the execution at once. Print what you want to see."
)


class EngineInterpreter:
    """A DSPy ``CodeInterpreter`` running code in an rlm-integrations environment.

    The environment lives on a private event-loop thread for the interpreter's lifetime, so
    the synchronous protocol works from plain threads and from inside running loops alike.
    """

    def __init__(
        self,
        tools: dict[str, Callable[..., Any]] | None = None,
        output_fields: list[dict[str, Any]] | None = None,
        *,
        environment: str | type[Environment] = "auto",
        environment_kwargs: dict[str, Any] | None = None,
        execution_timeout: float | None = None,
    ) -> None:
        self.tools: dict[str, Callable[..., Any]] = dict(tools or {})
        self.output_fields = output_fields
        self.environment = environment
        self.environment_kwargs = dict(environment_kwargs or {})
        self.execution_timeout = execution_timeout
        self.execution_instructions = _INSTRUCTIONS.format(env=_env_name(environment))
        self._env: Environment | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._bound_tools: tuple[str, ...] | None = None
        self._variables: dict[str, Any] = {}
        self._submission: dict[str, Any] | None = None
        self._caller: contextvars.Context | None = None
        self._busy = threading.Lock()
        self._ended = False

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the environment (idempotent); later ``execute`` calls share its state."""
        if self._ended:
            raise CodeInterpreterError("This interpreter has been shut down; create a new one.")
        if self._env is not None:
            return
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="rlm-dspy-interpreter", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        env = make_environment(self.environment, self.environment_kwargs)
        functions = {
            CALL_TOOL: HostFunction(CALL_TOOL, self._call_tool),
            GET_VARS: HostFunction(GET_VARS, self._get_vars),
            SUBMIT_VALUES: HostFunction(SUBMIT_VALUES, self._submit),
        }
        try:
            self._run(env.start(None, functions))
            self._run(env.execute("del context"))
        except Exception as e:
            self._run(env.close())
            self._stop_loop()
            self._ended = True
            raise CodeInterpreterError(
                f"Could not start the {_env_name(self.environment)!r} environment: {e}"
            ) from e
        self._env = env

    def shutdown(self) -> None:
        """Close the environment and its loop thread. Idempotent."""
        if self._ended and self._env is None:
            return
        self._ended = True
        env, self._env = self._env, None
        if env is not None and self._loop is not None:
            try:
                self._run(env.close())
            finally:
                self._stop_loop()

    def __enter__(self) -> EngineInterpreter:
        self.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.shutdown()

    def __call__(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        return self.execute(code, variables)

    # -- execution ------------------------------------------------------------------------
    def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        """Run ``code``; returns ``FinalOutput`` after ``SUBMIT``, else printed output or None."""
        if not isinstance(code, str):
            raise CodeInterpreterError("code must be a string")
        if not self._busy.acquire(blocking=False):
            raise CodeInterpreterError("This interpreter is already running a cell.")
        try:
            variables = dict(variables or {})
            self._check_names(variables)
            ast.parse(code)  # a SyntaxError goes to the caller as is, like DSPy's interpreters
            self.start()
            assert self._env is not None
            self._caller = contextvars.copy_context()
            self._variables = variables
            self._submission = None
            prelude = []
            names = tuple(sorted(self.tools))
            if names != self._bound_tools:
                prelude.append(_TOOLS_CELL.format(names=list(names)))
            if variables:
                prelude.append(_VARS_CELL)
            if prelude:
                ready = self._run(self._env.execute("\n".join(prelude)))
                if ready.error or ready.crashed:
                    raise CodeInterpreterError(f"Could not prepare the REPL: {ready.error}")
                self._bound_tools = names
            result = self._run(self._env.execute(code, timeout=self.execution_timeout))
            if self._submission is not None:
                return FinalOutput(self._submission)
            if result.crashed:
                self.shutdown()
                raise CodeInterpreterError(f"The REPL crashed: {result.error}")
            output = result.stdout + (result.stderr or "")
            if result.error or result.timed_out:
                message = result.error or "The cell timed out."
                raise CodeExecutionError(f"{output.rstrip()}\n{message}".strip())
            return output.rstrip("\n") or None
        finally:
            self._variables = {}
            self._caller = None
            self._busy.release()

    def _check_names(self, variables: dict[str, Any]) -> None:
        bad = [
            n
            for n in variables
            if not isinstance(n, str)
            or not n.isidentifier()
            or keyword.iskeyword(n)
            or n in _RESERVED
            or n in self.tools
        ]
        if bad:
            raise CodeInterpreterError(
                f"variable names must be identifiers distinct from tools and SUBMIT; invalid: {bad}"
            )

    # -- host functions (run on the interpreter's loop) -----------------------------------
    async def _call_tool(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        fn = self.tools.get(name)
        if fn is None:
            raise NameError(f"No tool named {name!r} is registered with the interpreter.")
        caller = self._caller

        def call() -> Any:
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                value = asyncio.run(_awaited(value))
            return value

        # DSPy tools read dspy.settings (LM, usage tracker, trace) from the caller's context.
        target = caller.copy().run if caller is not None else contextvars.copy_context().run
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, target, call)

    async def _get_vars(self) -> dict[str, Any]:
        return self._variables

    async def _submit(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        fields = self.output_fields
        if fields is None:
            if len(args) != 1 or kwargs:
                raise TypeError("SUBMIT takes exactly one value")
            self._submission = {"output": args[0]}
            return
        names = [f["name"] for f in fields]
        if args and kwargs:
            raise TypeError("SUBMIT takes positional or keyword values, not both")
        values = dict(zip(names, args, strict=False)) if args else dict(kwargs)
        if len(args) > len(names) or set(values) != set(names):
            raise TypeError(f"SUBMIT needs exactly these fields: {', '.join(names)}")
        self._submission = values

    # -- loop plumbing --------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        loop.close()


async def _awaited(value: Any) -> Any:
    return await value


class EngineInterpreterFactory:
    """``interpreter_factory=`` for ``dspy.RLM`` / ``CodeAct`` / ``ProgramOfThought``.

    Each call makes a fresh :class:`EngineInterpreter`; DSPy shuts it down after the run.
    ``execution_instructions`` tells the action prompt which runtime the code runs in.
    """

    def __init__(
        self,
        environment: str | type[Environment] = "auto",
        environment_kwargs: dict[str, Any] | None = None,
        *,
        execution_timeout: float | None = None,
    ) -> None:
        self.environment = environment
        self.environment_kwargs = dict(environment_kwargs or {})
        self.execution_timeout = execution_timeout
        self.execution_instructions = _INSTRUCTIONS.format(env=_env_name(environment))

    def __call__(self) -> EngineInterpreter:
        return EngineInterpreter(
            environment=self.environment,
            environment_kwargs=self.environment_kwargs,
            execution_timeout=self.execution_timeout,
        )


def _env_name(environment: Any) -> str:
    if isinstance(environment, str):
        return environment
    return getattr(environment, "__name__", type(environment).__name__)
