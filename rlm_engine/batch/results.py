"""What a batch row produced: one :class:`RowResult` per row, one JSON line in the output.

A row that could not run (its context file is missing, the completion raised) is a
result too, with ``status="error"`` and the error, so one bad row never stops a batch.
``usage`` is the row's whole completion (root, sub-calls and children), as
``RLMResult.usage.total``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlm_engine.batch.rows import BatchRow
    from rlm_engine.state import RLMResult


def normalize(text: str | None) -> str:
    """An answer as compared with ``expected``: case and surrounding/inner whitespace ignored."""
    return " ".join((text or "").split()).casefold()


@dataclass
class RowResult:
    """One row's outcome (one line of the results file)."""

    id: str
    status: str  # an RLMResult status: final | max_iterations | budget | timeout | error
    answer: str | None = None  # the final answer, else the best partial answer
    error: str | None = None
    expected: str | None = None
    #: ``answer == expected`` after :func:`normalize`; None without ``expected``.
    correct: bool | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    iterations: int = 0
    #: LM calls made from REPL code (``llm_query``, ``rlm_query``, ...), children included.
    sub_calls: int = 0
    #: Which path answered: "rlm" (the loop) or "direct" (one LM call; ``mode`` option).
    path: str = "rlm"
    warnings: list[str] = field(default_factory=list)
    duration: float = 0.0

    @classmethod
    def of(cls, row: BatchRow, res: RLMResult, duration: float) -> RowResult:
        answer = res.answer
        return cls(
            id=row.id,
            status=res.status,
            answer=answer,
            error=res.error,
            expected=row.expected,
            correct=None if row.expected is None else normalize(answer) == normalize(row.expected),
            usage=res.usage.total.to_dict(),
            iterations=len(res.iterations),
            sub_calls=res.usage.sub.calls,
            path=str(getattr(res, "path", "rlm")),
            warnings=list(res.warnings),
            duration=round(duration, 4),
        )

    @classmethod
    def failed(cls, row: BatchRow, error: BaseException, duration: float = 0.0) -> RowResult:
        """A row that raised instead of finishing: its error, what it spent (when known)."""
        message = str(error) or type(error).__name__
        return cls(
            id=row.id,
            status="error",
            error=f"{type(error).__name__}: {message}",
            expected=row.expected,
            correct=None if row.expected is None else False,
            duration=round(duration, 4),
        )

    @property
    def total_tokens(self) -> int:
        return int(self.usage.get("total_tokens") or 0)

    @property
    def cost(self) -> float | None:
        cost = self.usage.get("cost")
        return None if cost is None else float(cost)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RowResult:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


__all__ = ["RowResult", "normalize"]
