"""What a large run will take, said before it starts (``rlm run``).

A newcomer's 300 MB file made 6,302 LM calls and 78.9 M tokens without a word. The cost of
an RLM run depends on what the root chooses to read, so nobody can predict it; what can be
said is the size of the context and what reading it once would take: one sub-call per
sub-model window (the chunk size the root is told), about four characters per token. That
is a floor for a question that needs the whole text, and set beside the budgets in force
it tells the user, before anything is spent, whether the budgets will stop the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rlm_engine.config import RunLimits
from rlm_engine.progress import fmt_cost, fmt_tokens

#: A context above this many characters (~250,000 tokens, beyond most model windows) gets
#: an estimate before the run; smaller ones cost little whatever the root does.
LARGE_CONTEXT_CHARS = 1_000_000
#: The usual rule of thumb for English text and code.
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class RunEstimate:
    """Reading the context once: its size, the sub-calls and tokens that takes, the budgets."""

    context_chars: int
    chunk_chars: int
    sub_calls: int
    tokens: int
    cost: float | None
    limits: RunLimits

    @property
    def large(self) -> bool:
        return self.context_chars > LARGE_CONTEXT_CHARS

    def limits_hit(self) -> list[str]:
        """The budgets that reading the context once would exceed."""
        hit = []
        if self.limits.max_llm_calls is not None and self.sub_calls > self.limits.max_llm_calls:
            hit.append("--max-llm-calls")
        if self.limits.max_total_tokens is not None and self.tokens > self.limits.max_total_tokens:
            hit.append("--max-total-tokens")
        if self.limits.max_cost is not None and (self.cost or 0.0) > self.limits.max_cost:
            hit.append("--max-cost")
        return hit

    def lines(self) -> list[str]:
        """Two lines for stderr: the size and what reading it takes; the budgets."""
        cost = f", about {fmt_cost(self.cost)} at the sub-model's price" if self.cost else ""
        size = (
            f"large context: {self.context_chars:,} characters "
            f"(about {fmt_tokens(self.tokens)} tokens); reading it all once takes at least "
            f"{self.sub_calls:,} sub-calls (up to {self.chunk_chars:,} characters each){cost}"
        )
        budgets = "budgets per run: " + ", ".join(budget_words(self.limits))
        hit = self.limits_hit()
        if hit:
            budgets += (
                f"; reading everything once would pass {' and '.join(hit)}, so the run may "
                "stop with status budget (exit 2): raise them, or pass none to remove one"
            )
        else:
            budgets += (
                " (raise with --max-llm-calls/--max-total-tokens/--max-cost, none removes one)"
            )
        return [size, budgets]


def budget_words(limits: RunLimits) -> list[str]:
    """The budgets in force, as a person reads them: ``1,000 LM calls``, ``no cost limit``."""
    calls, tokens, cost = limits.max_llm_calls, limits.max_total_tokens, limits.max_cost
    return [
        f"{calls:,} LM calls" if calls is not None else "no LM-call limit",
        f"{fmt_tokens(tokens)} tokens" if tokens is not None else "no token limit",
        f"{fmt_cost(cost)}" if cost is not None else "no cost limit",
    ]


def estimate(
    context_chars: int,
    chunk_chars: int,
    limits: RunLimits,
    price: tuple[float, float] | None = None,
) -> RunEstimate:
    """Reading ``context_chars`` once in chunks of ``chunk_chars`` (the sub-model's window);
    ``price`` is the sub-model's USD per 1M (input, output) tokens when known."""
    chunk = max(1, chunk_chars)
    tokens = math.ceil(context_chars / CHARS_PER_TOKEN)
    cost = tokens * price[0] / 1_000_000 if price else None
    return RunEstimate(
        context_chars=context_chars,
        chunk_chars=chunk,
        sub_calls=math.ceil(context_chars / chunk),
        tokens=tokens,
        cost=cost,
        limits=limits,
    )


__all__ = [
    "CHARS_PER_TOKEN",
    "LARGE_CONTEXT_CHARS",
    "RunEstimate",
    "budget_words",
    "estimate",
]
