"""Few-shot demos of RLMModule's predictors carry the behaviour, not the material.

A demo is sent with every call of its predictor, and RLM predictors meet material that
must not travel that way: a sub-call prompt holds a chunk of the context, so one such demo
on ``sub_query`` is re-sent with every later ``llm_query`` (BootstrapFewShot took a run
from 17,022 to 45,793 tokens that way); a raw training example holds whole input
documents under the task's field names, which the predictors do not even have, so DSPy
never sends it but ``save`` writes it (MIPROv2 produced a 435 KB program holding the
training set).

:class:`DemoBoundedPredict` therefore bounds its demos whenever they are set (by any
teleprompter, or ``load``), used (each call, which also covers demos appended in place)
and saved (``dump_state``):

- a field its signature does not have is dropped, and so is a demo left without an input
  or an output field of the signature (DSPy's adapters would skip it anyway);
- a value longer than ``max_demo_chars`` keeps its head and tail around a marker that
  says how much was left out, so code, reasoning and the shape of an answer stay visible.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import dspy

#: Characters one value of a demo may hold. Code and reasoning of a turn usually fit;
#: a context chunk in a sub-call prompt does not, and is cut to its head and tail.
DEFAULT_MAX_DEMO_CHARS = 1_000
MIN_DEMO_CHARS = 100  # room for the marker and a little of the value around it

#: Keys that are not fields but DSPy's own marks, kept (bootstrapped demos carry
#: ``augmented``; ``dspy_*`` keys are DSPy's bookkeeping).
_KEPT_KEYS = frozenset({"augmented"})


def check_max_demo_chars(value: Any) -> int:
    """``value`` as a demo bound, or a clear error."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_demo_chars must be an int, got {value!r}")
    if value < MIN_DEMO_CHARS:
        raise ValueError(f"max_demo_chars must be at least {MIN_DEMO_CHARS}, got {value}")
    return value


def clip_value(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters: head, a marker saying how much was left
    out, and tail (two thirds before the cut, one third after)."""
    if len(text) <= limit:
        return text
    keep = limit
    while True:  # the marker's length depends on the count it reports
        marker = f"\n[... {len(text) - keep:,} characters left out of this demo ...]\n"
        if keep + len(marker) <= limit or keep == 0:
            break
        keep = max(0, limit - len(marker))
    head = keep * 2 // 3
    tail = keep - head
    return text[:head] + marker + (text[-tail:] if tail else "")


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def bound_demo(demo: Any, signature: type[dspy.Signature], limit: int) -> Any | None:
    """``demo`` (an ``Example`` or a dict) with only the signature's fields, each value at
    most ``limit`` characters; None when no input or no output field is left."""
    keys = list(demo.keys(include_dspy=True)) if isinstance(demo, dspy.Example) else list(demo)
    fields = signature.fields
    if not any(k in signature.input_fields for k in keys) or not any(
        k in signature.output_fields for k in keys
    ):
        return None
    changes: dict[str, Any] = {}
    for key in keys:
        if key not in fields:
            continue
        value = demo[key]
        text = _as_text(value)
        if len(text) > limit:
            changes[key] = clip_value(text, limit)
    foreign = [
        k for k in keys if k not in fields and k not in _KEPT_KEYS and not k.startswith("dspy_")
    ]
    if not foreign and not changes:
        return demo
    if isinstance(demo, dspy.Example):
        return demo.without(*foreign).copy(**changes)
    return {k: changes.get(k, v) for k, v in demo.items() if k not in foreign}


def bound_demos(
    demos: Iterable[Any] | None, signature: type[dspy.Signature], limit: int
) -> list[Any]:
    """Every demo bounded (see :func:`bound_demo`); demos with nothing left are dropped."""
    out = []
    for demo in demos or ():
        if not isinstance(demo, dspy.Example | Mapping):
            raise TypeError(f"A demo must be a dspy.Example or a dict, got {type(demo).__name__}")
        kept = bound_demo(demo, signature, limit)
        if kept is not None:
            out.append(kept)
    return out


class DemoBoundedPredict(dspy.Predict):
    """A ``dspy.Predict`` whose demos are bounded when set, used and saved (see above)."""

    def __init__(
        self,
        signature: str | type[dspy.Signature],
        *,
        max_demo_chars: int = DEFAULT_MAX_DEMO_CHARS,
        **config: Any,
    ) -> None:
        # Before Predict.__init__: its reset() already sets ``demos``.
        self.max_demo_chars = check_max_demo_chars(max_demo_chars)
        super().__init__(signature, **config)

    @property
    def demos(self) -> list[Any]:
        return self._bounded_demos

    @demos.setter
    def demos(self, value: Iterable[Any] | None) -> None:
        self._bounded_demos = bound_demos(value, self.signature, self.max_demo_chars)

    def _bounded(self, demos: Any) -> list[Any]:
        return bound_demos(demos, self.signature, self.max_demo_chars)

    def forward(self, **kwargs: Any) -> Any:
        kwargs["demos"] = self._bounded(kwargs.get("demos", self.demos))
        return super().forward(**kwargs)

    async def aforward(self, **kwargs: Any) -> Any:
        kwargs["demos"] = self._bounded(kwargs.get("demos", self.demos))
        return await super().aforward(**kwargs)

    def dump_state(self, json_mode: bool = True) -> dict[str, Any]:
        state: dict[str, Any] = super().dump_state(json_mode=json_mode)
        state["demos"] = self._bounded(state["demos"])
        return state


__all__ = [
    "DEFAULT_MAX_DEMO_CHARS",
    "DemoBoundedPredict",
    "bound_demo",
    "bound_demos",
    "check_max_demo_chars",
    "clip_value",
]
