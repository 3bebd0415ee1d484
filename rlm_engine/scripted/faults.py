"""Fault injection: make the next N matching requests fail the way real APIs fail.

Failure handling (SDK retries, timeouts, error surfacing) can only be tested if the
server fails on demand, deterministically, and only for the requests a test picks.

Public API: :class:`Fault` (also ``rlm_engine.scripted.Fault``), passed to
``ScriptedServer.inject``. :class:`FaultBook` is the server's own bookkeeping; the server
consults it on every completion request, so this module ships with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from rlm_engine.scripted.model import Request

FaultMatch = str | Callable[[Request], bool] | None


@dataclass
class Fault:
    """One kind of failure for the next ``times`` matching requests (``None`` = forever).

    Precedence when several are set: ``hang`` (wait until the server stops or
    ``hang_seconds``, then drop), ``drop_connection`` (close the socket, no response),
    ``malformed`` (200 with a body that is not valid JSON), ``status`` (that HTTP status
    with a JSON error body and optional ``retry_after`` seconds). ``delay`` seconds are
    waited first; a fault with only ``delay`` answers normally after it. ``match`` is
    None (every completion request), a model name, or a ``Request -> bool`` callable.
    """

    status: int | None = None
    times: int | None = 1
    delay: float = 0.0
    malformed: bool = False
    drop_connection: bool = False
    hang: bool = False
    match: FaultMatch = None
    retry_after: float | None = None
    message: str | None = None
    hang_seconds: float = 600.0
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError(
                f"Fault status must be an HTTP error status (400-599), got {self.status}"
            )
        if self.times is not None and self.times < 1:
            raise ValueError(f"Fault times must be >= 1 or None, got {self.times}")
        if not (
            self.status or self.delay > 0 or self.malformed or self.drop_connection or self.hang
        ):
            raise ValueError("a Fault needs status, delay, malformed, drop_connection or hang")

    @property
    def kind(self) -> str:
        for name in ("hang", "drop_connection", "malformed"):
            if getattr(self, name):
                return name
        return f"status_{self.status}" if self.status else "delay"

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def matches(self, req: Request) -> bool:
        if self.match is None:
            return True
        if isinstance(self.match, str):
            return req.model == self.match
        return bool(self.match(req))


class FaultBook:
    """The pending faults; ``take`` consumes one firing atomically."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if not f.exhausted]

    def take(self, req: Request) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if not fault.exhausted and fault.matches(req):
                    fault.fired += 1
                    if fault.exhausted:
                        self._faults.remove(fault)
                    return fault
        return None
