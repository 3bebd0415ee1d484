"""Thread-safe request metrics, so tests can check what the server really saw.

Lets a test assert "N sub-calls reached the server at concurrency C" and "the tokens the
engine reported equal the tokens the server counted". Public API: every
:class:`~rlm_engine.scripted.ScriptedServer` records each request it handles into its
``stats`` (a :class:`ServerStats` of :class:`RequestRecord`; both also exported by
``rlm_engine.scripted``); the request log of ``python -m rlm_engine.scripted.server``
(``ScriptedServer.verbose``) is printed from the same records.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class RequestRecord:
    """One handled HTTP request. Tokens are 0 unless the model answered."""

    method: str
    path: str
    status: int
    started_at: float
    finished_at: float
    api: str | None = None
    model: str | None = None
    stream: bool = False
    prompt_tokens: int = 0
    #: Of ``prompt_tokens``: read from / written to the simulated prompt cache.
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    completion_tokens: int = 0
    last_user: str = ""
    #: ``fault`` is also "roles" (refused by ``strict_roles``) or "context_length".
    fault: str | None = None
    #: How the reply ended, in the model's terms: stop | length (cut at a cap) | tool_calls
    #: | stop_sequence ("" unless the model answered).
    finish_reason: str = ""
    #: Streamed replies: events written, and whether the client went away before the end
    #: (with ``token_delay`` the server stops generating then, as vLLM and llama.cpp do).
    events_sent: int = 0
    abandoned: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ServerStats:
    """Counters and the per-request log of one server (reset with ``reset``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._log: list[RequestRecord] = []
            self._by_model: dict[str, int] = {}
            self._by_path: dict[str, int] = {}
            self._in_flight = 0
            self._in_flight_by_model: dict[str, int] = {}
            self._max_in_flight = 0
            self._max_in_flight_by_model: dict[str, int] = {}

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)
            self._by_path[record.path] = self._by_path.get(record.path, 0) + 1
            if record.model is not None:
                self._by_model[record.model] = self._by_model.get(record.model, 0) + 1

    @contextmanager
    def serving(self, model: str) -> Iterator[None]:
        """Count a request as in flight (for ``max_in_flight``) while the block runs."""
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            n = self._in_flight_by_model.get(model, 0) + 1
            self._in_flight_by_model[model] = n
            self._max_in_flight_by_model[model] = max(self._max_in_flight_by_model.get(model, 0), n)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                self._in_flight_by_model[model] -= 1

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self._log)

    @property
    def by_model(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_model)

    @property
    def by_path(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_path)

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    @property
    def max_in_flight_by_model(self) -> dict[str, int]:
        with self._lock:
            return dict(self._max_in_flight_by_model)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def log(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def completions(self, model: str | None = None) -> list[RequestRecord]:
        """Completion requests the model answered, optionally of one model."""
        return [
            r
            for r in self.log
            if r.api in ("openai", "anthropic")
            and r.status == 200
            and r.fault in (None, "delay")
            and (model is None or r.model == model)
        ]

    def tokens(self, model: str | None = None) -> tuple[int, int]:
        """``(prompt_tokens, completion_tokens)`` summed over successful completions."""
        recs = self.completions(model)
        return sum(r.prompt_tokens for r in recs), sum(r.completion_tokens for r in recs)
