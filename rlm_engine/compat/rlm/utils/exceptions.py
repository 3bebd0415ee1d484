"""``rlm.utils.exceptions``: the limit errors, importable where the seed library had them.

``from rlm.utils.exceptions import BudgetExceededError`` becomes
``from rlm_engine.compat.rlm.utils.exceptions import BudgetExceededError``; the classes are
the ones the compat ``RLM`` raises (:mod:`rlm_engine.compat.rlm.results`).

``ContextWindowExceededError`` is here so ``except`` clauses written for the seed keep
importing, but this engine does not raise it: a prompt that nears the root model's window
is compacted (``History`` options), and a provider's context-length error teaches the
window and compacts, instead of ending the run.
"""

from __future__ import annotations

from rlm_engine.compat.rlm.results import (
    BudgetExceededError,
    CancellationError,
    ErrorThresholdExceededError,
    TimeoutExceededError,
    TokenLimitExceededError,
)


class ContextWindowExceededError(Exception):
    """The seed's "prompt past the window" error; never raised here (see the module doc)."""

    def __init__(
        self,
        model_name: str,
        estimated_input_tokens: int,
        context_limit: int,
        prompt_kind: str,
        estimation_method: str,
        message: str | None = None,
    ) -> None:
        self.model_name = model_name
        self.estimated_input_tokens = estimated_input_tokens
        self.context_limit = context_limit
        self.prompt_kind = prompt_kind
        self.estimation_method = estimation_method
        super().__init__(
            message
            or f"Context window exceeded for model {model_name!r}: about "
            f"{estimated_input_tokens:,} input tokens for the {prompt_kind} prompt, past "
            f"{context_limit:,}"
        )


__all__ = [
    "BudgetExceededError",
    "CancellationError",
    "ContextWindowExceededError",
    "ErrorThresholdExceededError",
    "TimeoutExceededError",
    "TokenLimitExceededError",
]
