"""Forward the engine's progress events to LangChain callbacks and LangGraph streams.

An RLM call can take minutes; users watch it through ``astream_events`` (each engine
event becomes an ``on_custom_event`` named ``rlm_<event>``, attributed to the chat
model's run) and, inside a LangGraph node, through ``stream_mode="custom"``
(``{"rlm": event}`` via ``get_stream_writer``).

The engine calls ``on_event`` synchronously from its event loop. Async callback handlers
must be awaited, so events are queued and a pump task delivers them in order; ``aclose``
waits until all are delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import (
    AsyncCallbackManager,
    BaseCallbackHandler,
    CallbackManager,
)

EVENT_PREFIX = "rlm_"


@dataclass
class RunTarget:
    """Where a chat-model run's events go: its handlers and its run id."""

    handlers: list[BaseCallbackHandler]
    run_id: UUID
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    inheritable_handlers: list[BaseCallbackHandler] = field(default_factory=list)
    inheritable_tags: list[str] = field(default_factory=list)
    inheritable_metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_manager(cls, manager: Any, run_id: UUID) -> RunTarget:
        """From a run manager (its own run id) or a configured manager plus the run id."""
        return cls(
            list(manager.handlers),
            run_id,
            list(manager.tags or []),
            dict(manager.metadata or {}),
            list(manager.inheritable_handlers or []),
            list(manager.inheritable_tags or []),
            dict(manager.inheritable_metadata or {}),
        )

    def child_manager(self) -> AsyncCallbackManager:
        """Callbacks for LangChain models the RLM calls, so their runs nest under this one."""
        return AsyncCallbackManager(
            handlers=list(self.inheritable_handlers),
            inheritable_handlers=list(self.inheritable_handlers),
            parent_run_id=self.run_id,
            tags=list(self.inheritable_tags),
            inheritable_tags=list(self.inheritable_tags),
            metadata=dict(self.inheritable_metadata),
            inheritable_metadata=dict(self.inheritable_metadata),
        )


def stream_writer() -> Callable[[Any], None] | None:
    """LangGraph's custom-stream writer when running inside a graph node, else None."""
    try:
        from langgraph.config import get_stream_writer
    except ImportError:
        return None
    try:
        return get_stream_writer()
    except (RuntimeError, KeyError, AttributeError):
        return None


class AsyncProgress:
    """``on_event`` for async runs: queue, then deliver to async-capable handlers."""

    def __init__(self, target: RunTarget | None, writer: Callable[[Any], None] | None) -> None:
        self.target = target
        self.writer = writer
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        if target is not None and target.handlers:
            self._manager = AsyncCallbackManager(
                handlers=target.handlers, tags=target.tags, metadata=target.metadata
            )
            self._pump = asyncio.get_running_loop().create_task(self._deliver())

    def __call__(self, event: dict[str, Any]) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer({"rlm": event})
        if self._pump is not None:
            self._queue.put_nowait(event)

    async def _deliver(self) -> None:
        assert self.target is not None
        while (event := await self._queue.get()) is not None:
            with contextlib.suppress(Exception):  # a broken handler must not break the run
                await self._manager.on_custom_event(
                    EVENT_PREFIX + str(event.get("event")), event, run_id=self.target.run_id
                )

    async def aclose(self) -> None:
        if self._pump is not None:
            self._queue.put_nowait(None)
            await self._pump
            self._pump = None


class SyncProgress:
    """``on_event`` for sync runs: handlers are called directly from the engine's thread."""

    def __init__(self, target: RunTarget | None, writer: Callable[[Any], None] | None) -> None:
        self.target = target
        self.writer = writer
        self._manager = (
            CallbackManager(handlers=target.handlers, tags=target.tags, metadata=target.metadata)
            if target is not None and target.handlers
            else None
        )

    def __call__(self, event: dict[str, Any]) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer({"rlm": event})
        if self._manager is not None and self.target is not None:
            with contextlib.suppress(Exception):
                self._manager.on_custom_event(
                    EVENT_PREFIX + str(event.get("event")), event, run_id=self.target.run_id
                )

    async def aclose(self) -> None:
        return None
