"""RLMModule's direct call (``mode="direct"|"auto"``): the task signature, predicted once.

For a DSPy module the natural "one LM call" is ``dspy.Predict`` on the task's own
signature: DSPy's adapter frames every input field and parses the typed outputs, exactly
as a plain ``dspy.Predict`` program would. :class:`DirectPredictClient` wraps that call as
the engine's root client for :func:`rlm_engine.direct.complete`, which decides, reserves
and counts it like any root call and falls back to the RLM loop on a context-length error.
The engine's own direct prompt is only used to estimate the size; the client ignores it.
"""

from __future__ import annotations

from typing import Any

import dspy

from rlm_engine.clients.base import LMClient
from rlm_engine.clients.streaming import attach_partial_usage
from rlm_engine.types import LMResponse, Message
from rlm_engine.usage import Usage
from rlm_integrations.dspy.lm_client import (
    UnparsedReply,
    dspy_scope,
    lm_name,
    measured,
    measured_response,
    resolve_lm,
)
from rlm_integrations.dspy.outputs import encode_answer
from rlm_integrations.dspy.parse_failures import describe_parse_error


class DirectReplyUnparseable(RuntimeError):
    """The direct call's reply could not be parsed by DSPy's adapter."""


class DirectPredictClient(LMClient):
    """One ``dspy.Predict(task)`` call on the call's inputs; answers with the outputs as the
    engine's final-answer JSON (``outputs.encode_answer``)."""

    def __init__(
        self,
        task: type[dspy.Signature],
        inputs: dict[str, Any],
        lm: Any,
        *,
        snapshot: Any,
        pricing: Any = None,
        ledger: Usage | None = None,
    ) -> None:
        self.task = task
        #: The run's usage ledger: a predictor call that made several LM calls (the
        #: adapter's JSON fallback) has all but the last counted here, each as a call.
        self.ledger = ledger
        self.inputs = inputs
        self.lm = lm
        self.snapshot = snapshot
        self.pricing = pricing
        with dspy_scope(snapshot):
            self.model_name = lm_name(resolve_lm(lm))  # the window is known by its name

    async def acomplete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        predict = dspy.Predict(self.task)
        with dspy_scope(self.snapshot):
            lm = resolve_lm(self.lm)
            name = lm_name(lm)
            try:
                pred, m = await measured(lambda: predict.acall(lm=lm, **self.inputs), lm)
            except UnparsedReply as e:
                error = DirectReplyUnparseable(
                    f"DSPy's adapter could not parse the direct reply: "
                    f"{describe_parse_error(e.error)}"
                )
                attach_partial_usage(error, measured_response("", name, e.measured, self.pricing))
                raise error from e.error
        earlier, last = m.split()
        for each in earlier:
            if self.ledger is not None:
                self.ledger.record_response(
                    measured_response("", name, each, self.pricing), "root", 0
                )
        values = {field: pred[field] for field in self.task.output_fields}
        return measured_response(encode_answer(values), name, last, self.pricing)


__all__ = ["DirectPredictClient", "DirectReplyUnparseable"]
