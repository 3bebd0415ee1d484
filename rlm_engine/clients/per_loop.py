"""One async SDK client per event loop.

An async HTTP client's connections belong to the event loop that opened them. The engine
runs completions on different loops (``RLM.completion`` gives each call a fresh one; a
conversation or a LangGraph graph keeps its own loop thread), and a ready ``LMClient`` the
user passes as ``backend`` serves them all: the SDK client it made on the first loop
fails on the next with "Event loop is closed". So a client keeps one SDK client per loop,
made on first use there; those of loops that are gone are dropped with them.

A user-supplied ``http_client`` is used as given, on whatever loop (it is theirs to bind).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """``get()``: the instance for the running loop (``first`` outside any loop and on
    the first loop that asks), made by ``make`` for every other loop."""

    def __init__(self, first: T, make: Callable[[], T] | None) -> None:
        self.first = first
        self._make = make
        self._first_loop: weakref.ReferenceType[asyncio.AbstractEventLoop] | None = None
        self._others: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> T:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self.first
        if self._make is None:
            return self.first
        if self._first_loop is None:  # ``first`` is bound to the first loop that uses it
            self._first_loop = weakref.ref(loop)
            return self.first
        if self._first_loop() is loop:
            return self.first  # (a loop that is gone never comes back: weakref gives None)
        made = self._others.get(loop)
        if made is None:
            made = self._others[loop] = self._make()
        return made


__all__ = ["PerLoop"]
