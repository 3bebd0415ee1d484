"""Run coroutines from sync code, also when an event loop is already running.

Jupyter, FastAPI handlers and LangChain's sync-in-async paths call sync APIs from inside a
running loop; ``asyncio.run`` fails there, so we hop to a private thread with its own loop.
"""

from __future__ import annotations

import asyncio
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
