"""Run coroutines from sync code, also when an event loop is already running.

Jupyter, FastAPI handlers and LangChain's sync-in-async paths call sync APIs from inside a
running loop; ``asyncio.run`` fails there, so we hop to a private thread with its own loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    values: list[T] = []
    errors: list[BaseException] = []
    ctx = contextvars.copy_context()

    def runner() -> None:
        try:
            values.append(ctx.run(asyncio.run, coro))
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)

    t = threading.Thread(target=runner, name="rlm-run-sync", daemon=True)
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return values[0]


class LoopThread:
    """One event loop on a private daemon thread, kept across sync calls.

    ``run_sync`` gives every call a fresh loop, which is right for one completion but
    wrong for objects whose async resources (a REPL's host channel, HTTP connections) are
    bound to the loop that created them and must outlive one call, like a conversation.
    Calls carry the caller's context variables (LangChain callbacks, DSPy settings).
    """

    def __init__(self, name: str = "rlm-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def in_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (from any other thread)."""
        if self.in_thread():
            coro.close()
            raise RuntimeError("LoopThread.run() called from its own loop; await instead")
        return self.submit(coro).result()

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and await it from any other loop (or directly there)."""
        if self.in_thread():
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop with the caller's context variables."""
        if self._loop.is_closed():
            coro.close()
            raise RuntimeError("This loop thread is closed")
        ctx = contextvars.copy_context()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:
            task = self._loop.create_task(coro, context=ctx)

            def finish(t: asyncio.Task[T]) -> None:
                if t.cancelled():
                    done.cancel()
                elif (error := t.exception()) is not None:
                    done.set_exception(error)
                else:
                    done.set_result(t.result())

            task.add_done_callback(finish)

        self._loop.call_soon_threadsafe(start)
        return done

    def close(self) -> None:
        """Stop the loop and its thread (idempotent)."""
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        if not self._thread.is_alive():
            self._loop.close()
