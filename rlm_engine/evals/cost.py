"""What an evaluation will cost, said and checked before anything is sent.

The estimate is rough on purpose and errs high: a direct run reads the context once in
one call; an RLM run reads it once through sub-calls (one per chunk the size of the
sub-model's window) plus a few root turns; depth 2 adds child roots. Prices are the
models' known prices (``rlm_engine.clients.base.KNOWN_PRICES``) or ``pricing`` in the
backend options; the offline scripted backend costs nothing. ``--max-cost`` refuses an
evaluation whose estimate is above it, or whose price is unknown, before the first call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rlm_engine.clients.base import price_for
from rlm_engine.config import RLMConfig
from rlm_engine.evals.tasks import CHARS_PER_TOKEN

#: Root turns of a typical RLM run, and the tokens each reads and writes.
ROOT_TURNS = 5
ROOT_TURN_INPUT = 4_000
ROOT_TURN_OUTPUT = 600
#: Characters one sub-call reads (the scripted root's chunk; real roots choose similar).
CHUNK_CHARS = 50_000
SUB_OVERHEAD_INPUT = 150
SUB_OUTPUT = 60
DIRECT_OUTPUT = 100
#: Depth 2 runs child RLMs: their root turns come on top.
DEPTH2_FACTOR = 1.5


class CostGuardError(RuntimeError):
    """The estimate is over ``max_cost``, or cannot be made: nothing was sent."""


@dataclass(frozen=True)
class Prices:
    """USD per 1M (input, output) tokens of the root and the sub model; None: unknown."""

    root: tuple[float, float] | None
    sub: tuple[float, float] | None
    root_model: str
    sub_model: str

    @property
    def unknown(self) -> list[str]:
        out = [self.root_model] if self.root is None else []
        if self.sub is None and self.sub_model not in out:
            out.append(self.sub_model)
        return out


def prices(config: RLMConfig) -> Prices:
    """The prices an evaluation runs at (the scripted backend is free)."""
    m = config.models
    root_model = m.model or "the backend's default model"
    sub_model = m.sub_model or m.model or root_model
    sub_backend = m.sub_backend if m.sub_backend is not None else m.backend
    kwargs = m.backend_kwargs or {}
    sub_kwargs = m.sub_backend_kwargs if m.sub_backend_kwargs is not None else kwargs
    root_model = str(kwargs.get("model_name") or root_model)
    sub_model = str(sub_kwargs.get("model_name") or sub_model)

    def one(backend: object, model: str, kw: dict[str, object]) -> tuple[float, float] | None:
        if backend == "scripted":
            return 0.0, 0.0
        pricing = kw.get("pricing")
        return price_for(model, pricing) if pricing is not None else price_for(model)  # type: ignore[arg-type]

    return Prices(
        one(m.backend, root_model, kwargs),
        one(sub_backend, sub_model, sub_kwargs),
        root_model,
        sub_model,
    )


def _usd(p: tuple[float, float] | None, inp: int, out: int) -> float | None:
    return None if p is None else (inp * p[0] + out * p[1]) / 1_000_000


def run_estimate(arm: str, size: int, p: Prices, *, direct: bool) -> tuple[int, float | None]:
    """Tokens and USD of one run of ``arm`` on a context of ``size`` tokens; ``direct``
    says whether the run takes the direct path (direct, or auto under its threshold)."""
    if direct:
        inp, out = size + 300, DIRECT_OUTPUT
        return inp + out, _usd(p.root, inp, out)
    chunks = max(1, math.ceil(size * CHARS_PER_TOKEN / CHUNK_CHARS))
    root_in, root_out = ROOT_TURNS * ROOT_TURN_INPUT, ROOT_TURNS * ROOT_TURN_OUTPUT
    sub_in, sub_out = size + chunks * SUB_OVERHEAD_INPUT, chunks * SUB_OUTPUT
    if arm == "rlm-d2":
        root_in, root_out = int(root_in * DEPTH2_FACTOR), int(root_out * DEPTH2_FACTOR)
    root_cost, sub_cost = _usd(p.root, root_in, root_out), _usd(p.sub, sub_in, sub_out)
    cost = None if root_cost is None or sub_cost is None else root_cost + sub_cost
    return root_in + root_out + sub_in + sub_out, cost


@dataclass
class EvalEstimate:
    """The whole evaluation: runs to make, tokens and USD (None when a price is unknown)."""

    runs: int = 0
    tokens: int = 0
    cost: float | None = 0.0
    unknown_prices: list[str] = field(default_factory=list)
    by_arm: dict[str, float] = field(default_factory=dict)

    def add(self, arm: str, tokens: int, cost: float | None) -> None:
        self.runs += 1
        self.tokens += tokens
        if cost is None or self.cost is None:
            self.cost = None
        else:
            self.cost += cost
            self.by_arm[arm] = self.by_arm.get(arm, 0.0) + cost

    def line(self) -> str:
        from rlm_engine.progress import fmt_cost, fmt_tokens

        cost = (
            f"about {fmt_cost(self.cost)}"
            if self.cost is not None
            else f"cost unknown (no price for {', '.join(self.unknown_prices)})"
        )
        return f"estimate: {self.runs:,} runs, about {fmt_tokens(self.tokens)} tokens, {cost}"

    def check(self, max_cost: float | None) -> None:
        """Raise :class:`CostGuardError` when the evaluation may not start."""
        if max_cost is None or self.runs == 0:
            return
        if self.cost is None:
            raise CostGuardError(
                f"cannot check --max-cost: no known price for {', '.join(self.unknown_prices)}. "
                "Give one (--backend-opt pricing=[IN,OUT] and --sub-backend-opt "
                "pricing=[IN,OUT], USD per 1M tokens), or lift the guard with --max-cost none "
                "(a free local server); nothing was sent"
            )
        if self.cost > max_cost:
            from rlm_engine.progress import fmt_cost

            biggest = max(self.by_arm, key=lambda a: self.by_arm[a]) if self.by_arm else "?"
            raise CostGuardError(
                f"the estimate ({fmt_cost(self.cost)} for {self.runs:,} runs; most in arm "
                f"{biggest}) is over --max-cost {fmt_cost(max_cost)}; nothing was sent. Raise "
                "--max-cost, or run fewer --sizes, --tasks or --arms"
            )


__all__ = ["CostGuardError", "EvalEstimate", "Prices", "prices", "run_estimate"]
