"""The paper authors' library's result and error types, built from an engine result.

Their ``RLM.completion`` returns an ``RLMChatCompletion`` (``response``, ``usage_summary``
per model, ``execution_time``, ``metadata``) and raises on a stopped run (budget, timeout);
the engine returns an :class:`~rlm_engine.RLMResult` with a ``status`` instead. This module
is the one place that turns the second into the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlm_engine.config import RLMConfig
from rlm_engine.error_streak import error_streak
from rlm_engine.state import RLMResult


@dataclass
class ModelUsageSummary:
    """Calls, tokens and cost of one model (``cost`` None when its price is unknown)."""

    total_calls: int
    total_input_tokens: int
    total_output_tokens: int
    total_cost: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "total_calls": self.total_calls,
            "total_input_tokens": self.total_input_tokens,
            "total_output_tokens": self.total_output_tokens,
        }
        if self.total_cost is not None:
            out["total_cost"] = self.total_cost
        return out


@dataclass
class UsageSummary:
    """Usage per model of one completion, root and sub-calls together."""

    model_usage_summaries: dict[str, ModelUsageSummary]

    @property
    def total_cost(self) -> float | None:
        costs = [s.total_cost for s in self.model_usage_summaries.values()]
        known = [c for c in costs if c is not None]
        return sum(known) if known else None

    @property
    def total_input_tokens(self) -> int:
        return sum(s.total_input_tokens for s in self.model_usage_summaries.values())

    @property
    def total_output_tokens(self) -> int:
        return sum(s.total_output_tokens for s in self.model_usage_summaries.values())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model_usage_summaries": {m: s.to_dict() for m, s in self.model_usage_summaries.items()}
        }
        if self.total_cost is not None:
            out["total_cost"] = self.total_cost
        return out


@dataclass
class RLMChatCompletion:
    """One completion: the final answer in ``response``; ``metadata`` holds the trajectory
    when an ``RLMLogger`` was given. ``result`` is the engine's full result (status,
    iterations, usage by depth) for code that wants more than the seed library offered."""

    root_model: str
    prompt: Any
    response: str
    usage_summary: UsageSummary
    execution_time: float
    metadata: dict[str, Any] | None = None
    error: str | None = None
    result: RLMResult | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "root_model": self.root_model,
            "prompt": self.prompt,
            "response": self.response,
            "usage_summary": self.usage_summary.to_dict(),
            "execution_time": self.execution_time,
        }
        if self.metadata is not None:
            out["metadata"] = self.metadata
        if self.error is not None:
            out["error"] = self.error
        return out


class BudgetExceededError(Exception):
    """The run stopped at ``max_budget`` (USD)."""

    def __init__(
        self,
        spent: float,
        budget: float,
        message: str | None = None,
        partial_answer: str | None = None,
    ) -> None:
        self.spent = spent
        self.budget = budget
        self.partial_answer = partial_answer
        super().__init__(message or f"Budget exceeded: spent ${spent:.6f} of ${budget:.6f} budget")


class TimeoutExceededError(Exception):
    """The run stopped at ``max_timeout`` seconds."""

    def __init__(
        self,
        elapsed: float,
        timeout: float,
        partial_answer: str | None = None,
        message: str | None = None,
    ) -> None:
        self.elapsed = elapsed
        self.timeout = timeout
        self.partial_answer = partial_answer
        super().__init__(message or f"Timeout exceeded: {elapsed:.1f}s of {timeout:.1f}s limit")


class TokenLimitExceededError(Exception):
    """The run stopped at ``max_tokens`` (tokens of the whole run)."""

    def __init__(
        self,
        tokens_used: int,
        token_limit: int,
        partial_answer: str | None = None,
        message: str | None = None,
    ) -> None:
        self.tokens_used = tokens_used
        self.token_limit = token_limit
        self.partial_answer = partial_answer
        super().__init__(
            message or f"Token limit exceeded: {tokens_used:,} of {token_limit:,} tokens"
        )


class CallLimitExceededError(Exception):
    """The run stopped at ``max_llm_calls`` (the engine's default budget of LM calls; the
    seed library had none, so this error is new)."""

    def __init__(self, calls: int, limit: int, partial_answer: str | None = None) -> None:
        self.calls = calls
        self.limit = limit
        self.partial_answer = partial_answer
        super().__init__(
            f"LM call limit reached: {calls} of max_llm_calls={limit}. Raise it with "
            "RLM(..., max_llm_calls=N), or None for no limit."
        )


class ErrorThresholdExceededError(Exception):
    """The run stopped at ``max_errors`` consecutive turns whose code raised."""

    def __init__(
        self,
        error_count: int,
        threshold: int,
        last_error: str | None = None,
        partial_answer: str | None = None,
        message: str | None = None,
    ) -> None:
        self.error_count = error_count
        self.threshold = threshold
        self.last_error = last_error
        self.partial_answer = partial_answer
        super().__init__(
            message
            or f"Error threshold exceeded: {error_count} consecutive errors (limit: {threshold})"
        )


class CancellationError(Exception):
    """The completion was interrupted (Ctrl-C)."""

    def __init__(self, partial_answer: str | None = None, message: str | None = None) -> None:
        self.partial_answer = partial_answer
        super().__init__(message or "Execution cancelled by user")


class RunFailedError(RuntimeError):
    """The run ended in an error (a root LM call that failed after its retries, ...)."""

    def __init__(self, error: str, partial_answer: str | None = None) -> None:
        self.partial_answer = partial_answer
        super().__init__(error)


def usage_summary(result: RLMResult) -> UsageSummary:
    """The result's usage per model, in the seed library's shape."""
    return UsageSummary(
        {
            model: ModelUsageSummary(t.calls, t.input_tokens, t.output_tokens, t.cost)
            for model, t in result.usage.by_model().items()
        }
    )


def root_model(result: RLMResult, config: RLMConfig) -> str:
    """The model that answered the root's calls (as the server named it), else the
    configured one, else "unknown" (the seed library's word)."""
    for record in result.usage.records:
        if record.role == "root" and record.depth == 0:
            return record.model
    return config.models.model or "unknown"


def raise_if_stopped(result: RLMResult, config: RLMConfig) -> None:
    """Raise the seed library's error for a run stopped by a limit or an error.

    ``final`` and ``max_iterations`` (answered by one more root call, as the seed library
    does) return normally.
    """
    partial = result.partial_answer
    run, usage = config.run, result.usage
    if result.status == "timeout":
        raise TimeoutExceededError(
            result.duration, run.run_timeout or 0.0, partial, result.error or None
        )
    if result.status == "budget":
        if run.max_cost is not None and (usage.cost or 0.0) >= run.max_cost:
            raise BudgetExceededError(usage.cost or 0.0, run.max_cost, result.error, partial)
        if run.max_total_tokens is not None and usage.total_tokens >= run.max_total_tokens:
            raise TokenLimitExceededError(
                usage.total_tokens, run.max_total_tokens, partial, result.error
            )
        raise CallLimitExceededError(usage.calls, run.max_llm_calls or 0, partial)
    streak = error_streak(result.iterations)
    if result.status == "error" and run.max_errors is not None and streak >= run.max_errors:
        last = next((b.error for b in reversed(result.iterations[-1].code_blocks) if b.error), None)
        raise ErrorThresholdExceededError(streak, run.max_errors, last, partial, result.error)
    if result.status == "error":
        raise RunFailedError(result.error or "the run failed", partial)


__all__ = [
    "BudgetExceededError",
    "CallLimitExceededError",
    "CancellationError",
    "ErrorThresholdExceededError",
    "ModelUsageSummary",
    "RLMChatCompletion",
    "RunFailedError",
    "TimeoutExceededError",
    "TokenLimitExceededError",
    "UsageSummary",
    "raise_if_stopped",
    "root_model",
    "usage_summary",
]
