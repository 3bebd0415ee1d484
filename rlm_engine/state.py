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
from typing import Any, Literal

from rlm_engine.compaction import Compaction, history_messages
from rlm_engine.config import RLMConfig
from rlm_engine.prompts import build_system_prompt
from rlm_engine.text import clean_text
from rlm_engine.types import Iteration, Message, Status
from rlm_engine.usage import Usage

#: Which path answered a completion: the RLM loop or one direct LM call.
RunPath = Literal["rlm", "direct"]


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
    #: Why this run took the RLM loop (``RunLimits.mode``; ``rlm_engine.direct``).
    path_reason: str | None = None

    @classmethod
    def opening(
        cls,
        config: RLMConfig,
        info: dict[str, Any],
        first_user: str,
        query: str | None,
        *,
        depth: int = 0,
        sub_window: int = 100_000,
    ) -> RLMState:
        """A new run's state: the root's system prompt for ``config`` at ``depth`` (the
        sub model reads ``sub_window`` characters at once) and its opening message."""
        system = build_system_prompt(
            can_recurse=depth + 1 < config.run.max_depth,
            sub_window=sub_window,
            tools_doc=config.repl.tools_doc,
            template=config.repl.system_prompt,
        )
        return cls(
            query=query,
            context_info=info,
            system=clean_text(system),
            first_user=first_user,
            depth=depth,
        )

    def settle(self, run_timeout: float | None) -> None:
        """At the end of a run: an unset status is an error, and every status but final
        says why in ``error``."""
        if self.status is None:
            self.status = "error"
            self.error = self.error or "The run ended before reaching a final answer."
        if self.status == "timeout" and self.error is None:
            self.error = f"The completion ran past its run_timeout of {run_timeout or 0:g} s."

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
    #: Which path answered: "rlm" (the loop) or "direct" (one LM call, no REPL), and why
    #: (``RunLimits.mode``; ``rlm_engine.direct``).
    path: RunPath = "rlm"
    path_reason: str = ""

    @classmethod
    def of(
        cls,
        state: RLMState,
        usage: Usage,
        *,
        duration: float,
        warnings: list[str],
        environment: str,
    ) -> RLMResult:
        """The result of a settled run (``RLMState.settle``)."""
        assert state.status is not None
        return cls(
            response=state.final_answer if state.status == "final" else None,
            status=state.status,
            usage=usage,
            iterations=list(state.iterations),
            error=state.error,
            partial_answer=state.partial_answer,
            duration=duration,
            run_id=state.run_id,
            query=state.query,
            context_info=state.context_info,
            warnings=warnings,
            environment=environment,
            path="rlm",
            path_reason=state.path_reason or "",
        )

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
            "path": self.path,
            "path_reason": self.path_reason,
            "duration": self.duration,
            "iterations": len(self.iterations),
            "usage": usage,
        }
