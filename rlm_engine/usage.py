"""Exact usage accounting across the root call, sub-calls and child RLMs at any depth.

One ledger is shared by a completion and every child it spawns, so totals are exact by
construction: each LM call is recorded once, where it happens, tagged with model, depth
and role.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rlm_engine.types import LMResponse

Role = Literal["root", "sub"]


@dataclass
class UsageTotals:
    """Call, token and cost counts of a set of LM calls."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None  # None while no call had a known price
    #: Of ``input_tokens``: read from the provider's prompt cache, and written to it.
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(
        self,
        input_tokens: int,
        output_tokens: int,
        cost: float | None,
        cached_input_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> None:
        """Count one LM call."""
        self.calls += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cached_input_tokens += cached_input_tokens
        self.cache_write_tokens += cache_write_tokens
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost

    def add_response(self, resp: LMResponse) -> None:
        """Count one LM call from its response."""
        self.add(
            resp.input_tokens,
            resp.output_tokens,
            resp.cost,
            resp.cached_input_tokens,
            resp.cache_write_tokens,
        )

    def absorb(self, other: UsageTotals) -> None:
        """Count every call ``other`` counted (e.g. a child RLM's totals into its parent's)."""
        self.calls += other.calls
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_input_tokens += other.cached_input_tokens
        self.cache_write_tokens += other.cache_write_tokens
        if other.cost is not None:
            self.cost = (self.cost or 0.0) + other.cost

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cost": self.cost,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_tokens": self.cache_write_tokens,
        }


@dataclass
class UsageRecord:
    model: str
    depth: int
    role: Role
    input_tokens: int
    output_tokens: int
    cost: float | None
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0

    def row(self) -> list[Any]:
        """The record as a JSON row (``Usage.to_dict()["records"]``, checkpoints)."""
        return [
            self.model,
            self.depth,
            self.role,
            self.input_tokens,
            self.output_tokens,
            self.cost,
            self.cached_input_tokens,
            self.cache_write_tokens,
        ]

    def totals_args(self) -> tuple[int, int, float | None, int, int]:
        return (
            self.input_tokens,
            self.output_tokens,
            self.cost,
            self.cached_input_tokens,
            self.cache_write_tokens,
        )


@dataclass
class Usage:
    """Usage of a completion: totals, root vs sub, and per model and per depth.

    ``root`` counts the calls of the top-level root LM only; every other call (plain
    sub-LM calls and every call made by child RLMs) counts as ``sub``.
    """

    records: list[UsageRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(
        self,
        *,
        model: str,
        depth: int,
        role: Role,
        input_tokens: int,
        output_tokens: int,
        cost: float | None,
        cached_input_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> None:
        record = UsageRecord(
            model,
            depth,
            role,
            input_tokens,
            output_tokens,
            cost,
            cached_input_tokens,
            cache_write_tokens,
        )
        with self._lock:
            self.records.append(record)

    def record_response(self, resp: LMResponse, role: str, depth: int) -> None:
        """Record one LM call from its response (``role``: "root" or "sub")."""
        self.record(
            model=resp.model,
            depth=depth,
            role="root" if role == "root" else "sub",
            input_tokens=resp.input_tokens,
            output_tokens=resp.output_tokens,
            cost=resp.cost,
            cached_input_tokens=resp.cached_input_tokens,
            cache_write_tokens=resp.cache_write_tokens,
        )

    def _sum(self, pred: Any = None) -> UsageTotals:
        t = UsageTotals()
        with self._lock:
            recs = list(self.records)
        for r in recs:
            if pred is None or pred(r):
                t.add(*r.totals_args())
        return t

    @property
    def total(self) -> UsageTotals:
        return self._sum()

    @property
    def root(self) -> UsageTotals:
        return self._sum(lambda r: r.role == "root" and r.depth == 0)

    @property
    def sub(self) -> UsageTotals:
        return self._sum(lambda r: not (r.role == "root" and r.depth == 0))

    @property
    def calls(self) -> int:
        return len(self.records)

    @property
    def input_tokens(self) -> int:
        return self.total.input_tokens

    @property
    def output_tokens(self) -> int:
        return self.total.output_tokens

    @property
    def total_tokens(self) -> int:
        return self.total.total_tokens

    @property
    def cost(self) -> float | None:
        return self.total.cost

    def by_model(self) -> dict[str, UsageTotals]:
        out: dict[str, UsageTotals] = {}
        for r in list(self.records):
            out.setdefault(r.model, UsageTotals()).add(*r.totals_args())
        return out

    def by_depth(self) -> dict[int, UsageTotals]:
        out: dict[int, UsageTotals] = {}
        for r in list(self.records):
            out.setdefault(r.depth, UsageTotals()).add(*r.totals_args())
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total.to_dict(),
            "root": self.root.to_dict(),
            "sub": self.sub.to_dict(),
            "by_model": {k: v.to_dict() for k, v in self.by_model().items()},
            "by_depth": {str(k): v.to_dict() for k, v in self.by_depth().items()},
            "records": [r.row() for r in list(self.records)],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Usage:
        u = cls()
        for row in d.get("records", []):  # rows of 6 (before prompt caching) or 8 fields
            u.records.append(UsageRecord(*row))
        return u
