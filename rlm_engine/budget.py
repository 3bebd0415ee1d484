"""Whole-completion limits, shared by a completion and every child RLM it spawns.

Calls are *reserved* before they start, so concurrent batched sub-calls can never exceed
``max_llm_calls``. Token and cost limits are checked before each call (a call's size is
unknown until it returns, so the last call may overshoot them).
"""

from __future__ import annotations

import threading
import time

from rlm_engine.usage import Usage


class Budget:
    """The whole-run limits of :class:`~rlm_engine.config.RunLimits` over one usage ledger."""

    def __init__(
        self,
        usage: Usage,
        *,
        max_llm_calls: int | None = None,
        max_total_tokens: int | None = None,
        max_cost: float | None = None,
        run_timeout: float | None = None,
    ) -> None:
        self.usage = usage
        self.max_llm_calls = max_llm_calls
        self.max_total_tokens = max_total_tokens
        self.max_cost = max_cost
        self.run_timeout = run_timeout
        self.deadline = time.monotonic() + run_timeout if run_timeout else None
        self.calls_started = 0
        self.hit: str | None = None  # the first limit that refused a call
        self._lock = threading.Lock()

    def _over(self) -> str | None:
        if self.max_llm_calls is not None and self.calls_started >= self.max_llm_calls:
            return f"max_llm_calls={self.max_llm_calls}"
        if self.max_total_tokens is not None and self.usage.total_tokens >= self.max_total_tokens:
            return f"max_total_tokens={self.max_total_tokens}"
        if self.max_cost is not None and (self.usage.cost or 0.0) >= self.max_cost:
            return f"max_cost={self.max_cost}"
        return None

    def exhausted(self) -> str | None:
        """Which limit is used up, if any (without reserving anything)."""
        with self._lock:
            return self._over()

    def reserve(self) -> str | None:
        """Reserve one LM call; returns the exhausted limit instead when there is none left."""
        with self._lock:
            reason = self._over()
            if reason:
                self.hit = self.hit or reason
                return reason
            self.calls_started += 1
            return None

    def remaining_time(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def clamp(self, timeout: float | None) -> float | None:
        """The smaller of ``timeout`` and the time left (never below a few ms)."""
        left = self.remaining_time()
        if left is None:
            return timeout
        left = max(left, 0.001)
        return left if timeout is None else min(timeout, left)
