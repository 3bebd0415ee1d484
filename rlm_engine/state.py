"""The data of one RLM run: its resumable state and its outcome.

:class:`RLMState` is everything a run needs to continue after a crash (checkpointed by
the LangGraph integration, serialized by ``to_dict``); :class:`RLMResult` is what a
completion returns. Plain data, apart from the loop in ``rlm_engine.session`` that
advances them.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from rlm_engine.compaction import Compaction, history_messages
from rlm_engine.types import Iteration, Message, Status
from rlm_engine.usage import Usage


@dataclass
class RLMState:
    """All a run needs to continue after a crash. JSON-serializable via ``to_dict``.

    The root conversation is not stored twice: ``messages()`` rebuilds it from the two
    opening messages and the iterations.
    """

    query: str | None
    context_info: dict[str, Any]
    system: str
    first_user: str
    depth: int = 0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    iterations: list[Iteration] = field(default_factory=list)
    pending_response: str | None = None
    #: Usage and latency of the root call that produced ``pending_response``.
    pending_usage: dict[str, Any] | None = None
    final_answer: str | None = None
    partial_answer: str | None = None
    status: Status | None = None
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    #: The latest compaction of the root history (``rlm_engine.compaction``): iterations
    #: ``1..upto`` are replaced in ``messages()`` by ``summary``; None until one happens.
    compaction: dict[str, Any] | None = None

    @property
    def iteration(self) -> int:
        return len(self.iterations)

    def messages(self) -> list[Message]:
        """The root's prompt: the whole history, or its compacted form after a compaction."""
        compaction = Compaction.from_dict(self.compaction) if self.compaction else None
        return history_messages(self.system, self.first_user, self.iterations, compaction)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "iterations"}
        d["iterations"] = [it.to_dict() for it in self.iterations]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RLMState:
        d = dict(d)
        d["iterations"] = [Iteration.from_dict(i) for i in d.get("iterations", [])]
        return cls(**d)


@dataclass
class RLMResult:
    """The outcome of a completion. ``response`` is None unless ``status == "final"``.

    ``error`` says why a run did not end with an answer. ``warnings`` says what a caller
    should know about an answer it did get: today, that every sub-call of the run failed
    (the status stays ``"final"``, but the answer rests on no sub-model output). Empty when
    there is nothing to say.
    """

    response: str | None
    status: Status
    usage: Usage
    iterations: list[Iteration]
    error: str | None = None
    partial_answer: str | None = None
    duration: float = 0.0
    run_id: str = ""
    query: str | None = None
    context_info: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: Where the generated code ran ("sandbox", "subprocess", "local", ...): the default
    #: "auto" resolved to what this machine has.
    environment: str = ""

    @property
    def answer(self) -> str | None:
        """The final answer, else the best partial answer."""
        return self.response if self.response is not None else self.partial_answer

    def to_dict(self) -> dict[str, Any]:
        usage = self.usage.to_dict()
        usage.pop("records", None)
        return {
            "run_id": self.run_id,
            "status": self.status,
            "response": self.response,
            "partial_answer": self.partial_answer,
            "error": self.error,
            "warnings": list(self.warnings),
            "environment": self.environment,
            "duration": self.duration,
            "iterations": len(self.iterations),
            "usage": usage,
        }
