"""The in-process environment: fastest, and for trusted documents only.

Generated code runs in the host process with the host's privileges: it can read
environment variables (API keys), files and the engine's memory, and open network
connections. A prompt injection in a document becomes code here. It is never chosen by
default (``auto`` picks an isolated environment); ask for it by name when the documents
are trusted, or when the REPL must hold host objects (a non-JSON context, tools that return
live objects). It warns once per process when a large context or ``verbose`` suggests real
documents. What it does guarantee: a per-cell timeout that stops runaway Python code
without killing the host, capped output capture, and the context shared by reference.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import itertools
import threading
import time
import warnings
from typing import Any

from rlm_engine.environments.base import Environment, HostFunction
from rlm_engine.environments.repl_core import (
    CellInterrupted,
    CellOutput,
    HostCallError,
    ReplCore,
)
from rlm_engine.types import ExecResult

_GRACE_SECONDS = 2.0
#: Contexts at least this large (characters, estimated) make ``local`` warn once.
WARN_CONTEXT_CHARS = 100_000

_warned = threading.Event()


class LocalEnvironmentWarning(UserWarning):
    """Generated code runs in this process: fine for trusted documents only."""


def warn_local(why: str) -> None:
    """Warn once per process that ``local`` gives model-written code the host's privileges."""
    if _warned.is_set():
        return
    _warned.set()
    warnings.warn(
        f"environment='local' runs model-written code inside this process ({why}): it can "
        "read your API keys and files and open network connections, so a prompt injection "
        "in a document becomes code on this machine. Use it for trusted documents only; "
        "the default environment='auto' isolates the code.",
        LocalEnvironmentWarning,
        stacklevel=3,
    )


def context_chars(context: Any, limit: int = WARN_CONTEXT_CHARS) -> int:
    """Characters of text in ``context``, counted until ``limit`` is reached (cheap)."""
    total, pending = 0, [context]
    while pending and total < limit:
        item = pending.pop()
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, dict):
            pending.extend(itertools.islice(item.items(), limit))
        elif isinstance(item, list | tuple):
            pending.extend(item[:limit])
        elif item is not None:
            total += 8
    return total


def _raise_in_thread(thread: threading.Thread) -> None:
    """Schedule ``CellInterrupted`` in ``thread``: it lands at the next bytecode boundary."""
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(CellInterrupted)
        )


def _settle(done: asyncio.Future[CellOutput], result: CellOutput) -> None:
    if not done.done():  # a cancelled wait may have settled it already
        done.set_result(result)


class LocalEnvironment(Environment):
    in_process = True
    kind = "local"

    def __init__(
        self, timeout: float | None = None, max_output_chars: int = 1_000_000, **kw: object
    ) -> None:
        super().__init__(timeout=timeout, max_output_chars=max_output_chars, **kw)
        self._core: ReplCore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._functions: dict[str, HostFunction] = {}
        self._stuck: list[threading.Thread] = []

    async def start(
        self, context: Any, functions: dict[str, HostFunction], setup: str | None = None
    ) -> None:
        if context_chars(context) >= WARN_CONTEXT_CHARS:
            warn_local(f"with a context of over {WARN_CONTEXT_CHARS:,} characters")
        self._loop = asyncio.get_running_loop()
        self._functions = functions
        self._core = ReplCore(context, self._call_host, list(functions), self.max_output_chars)
        if setup:
            # In a thread, like cells: setup code may call host functions on this loop.
            error = await asyncio.to_thread(self._core.run_setup, setup)
            if error:
                raise RuntimeError(f"The REPL setup code failed: {error}")

    def _call_host(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        assert self._loop is not None
        coro = self._functions[name].fn(*args, **kwargs)
        fut: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(
            coro,  # type: ignore[arg-type]  # host functions are coroutine functions
            self._loop,
        )
        try:
            while True:  # poll so an interrupt raised into this thread can land
                try:
                    return fut.result(timeout=0.05)
                except concurrent.futures.TimeoutError:
                    continue
        except (CellInterrupted, KeyboardInterrupt):
            fut.cancel()
            raise
        except HostCallError:
            raise
        except Exception as e:
            raise HostCallError(f"{name} failed: {type(e).__name__}: {e}") from None

    async def execute(self, code: str, timeout: float | None = None) -> ExecResult:
        if self._core is None:
            raise RuntimeError("LocalEnvironment.execute() called before start()")
        if self._stuck and any(t.is_alive() for t in self._stuck):
            return ExecResult(
                error="The REPL is still busy with a cell that ignored its interrupt "
                "(it is blocked in native code). Its state is unreliable.",
                crashed=True,
            )
        limit = timeout if timeout is not None else self.timeout
        loop = asyncio.get_running_loop()
        done: asyncio.Future[CellOutput] = loop.create_future()
        core = self._core

        def work() -> None:
            try:
                result = core.run_cell(code)
            except BaseException as e:  # CellInterrupted landing after run_cell returned
                result = {"error": f"Interrupted: {type(e).__name__}", "interrupted": True}
            if not loop.is_closed():  # the run may have ended (timeout) while this cell ran
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, done, result)

        started = time.perf_counter()
        thread = threading.Thread(target=work, name="rlm-local-cell", daemon=True)
        thread.start()
        try:
            result = await asyncio.wait_for(asyncio.shield(done), limit)
        except TimeoutError:
            _raise_in_thread(thread)
            try:
                result = await asyncio.wait_for(asyncio.shield(done), _GRACE_SECONDS)
            except TimeoutError:
                self._stuck.append(thread)
                result = {"error": "Timed out and could not be interrupted.", "interrupted": True}
            result["error"] = (
                f"Timeout: the cell exceeded {limit:g} s and was interrupted. Variables set "
                "before the interrupt are kept. Work on smaller pieces or use llm_query_batched."
            )
            return self._to_result(result, started, timed_out=True)
        except asyncio.CancelledError:
            _raise_in_thread(thread)
            raise
        return self._to_result(result, started)

    @staticmethod
    def _to_result(r: CellOutput, started: float, timed_out: bool = False) -> ExecResult:
        return ExecResult(
            stdout=r.get("stdout", ""),
            stderr=r.get("stderr", ""),
            error=r.get("error"),
            final=r.get("final"),
            timed_out=timed_out,
            duration=time.perf_counter() - started,
        )

    async def get_variable(self, name: str) -> tuple[bool, str]:
        assert self._core is not None
        return self._core.get_variable(name)

    async def list_variables(self) -> dict[str, str]:
        assert self._core is not None
        return self._core.list_variables()

    async def close(self) -> None:
        self._core = None  # drops the namespace (and our reference to the context)
