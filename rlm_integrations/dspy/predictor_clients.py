"""Engine clients whose "LM call" is a call of one of RLMModule's DSPy predictors.

``RootTurnClient`` answers the engine's root calls with the root ``dspy.Predict`` (called
through ``acall``, so DSPy records the trace optimizers learn from), and the engine's
out-of-turns request (flagged by ``rlm_engine.partial_answer.is_final_answer_request``,
not recognized by its text) with the extract predictor. ``SubCallClient`` sends every
``llm_query`` prompt through the sub-call predictor and child-RLM turns straight to the
sub LM. Both are created per module call and hold no state beyond that call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dspy

from rlm_engine.clients.base import LMClient
from rlm_engine.partial_answer import is_final_answer_request
from rlm_engine.types import LMResponse, Message
from rlm_integrations.dspy.lm_client import (
    call_lm_messages,
    dspy_scope,
    lm_name,
    measured,
    measured_response,
    resolve_lm,
)
from rlm_integrations.dspy.outputs import encode_answer
from rlm_integrations.dspy.signatures import call_signature
from rlm_integrations.dspy.turns import format_history, render_turn

if TYPE_CHECKING:
    from rlm_engine.session import RLMSession


@dataclass
class TurnSetup:
    """What stays the same for every root turn of one module call."""

    variables_info: str
    max_iterations: int
    runtime_note: str


class RootTurnClient(LMClient):
    """The root LM of one RLMModule call: a DSPy predictor instead of a chat completion."""

    #: The predictor's prompt is its signature and the REPL history it formats itself.
    builds_own_prompt = True

    def __init__(
        self,
        root: dspy.Predict,
        extract: dspy.Predict,
        task: type[dspy.Signature],
        setup: TurnSetup,
        *,
        snapshot: Any,
        pricing: Any = None,
    ) -> None:
        self.root = root
        self.extract = extract
        self.task = task
        self.setup = setup
        self.snapshot = snapshot
        self.pricing = pricing
        self.session: RLMSession | None = None
        self.model_name = "dspy-root"

    def bind(self, session: RLMSession) -> None:
        """Attach the session whose iterations become ``repl_history``."""
        self.session = session

    async def acomplete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        if self.session is None:
            raise RuntimeError("RootTurnClient.bind(session) must be called before the first turn")
        iterations = self.session.state.iterations
        with dspy_scope(self.snapshot):
            lm = resolve_lm(self.root.lm)
            if is_final_answer_request():  # flagged by the engine, whatever the wording
                pred, m = await measured(
                    lambda: self.extract.acall(
                        variables_info=self.setup.variables_info,
                        repl_history=format_history(iterations),
                    )
                )
                values = {name: pred[name] for name in self.task.output_fields}
                text = f"FINAL({encode_answer(values)})"
            else:
                signature = call_signature(self.root.signature, self.setup.runtime_note)
                pred, m = await measured(
                    lambda: self.root.acall(
                        signature=signature,
                        variables_info=self.setup.variables_info,
                        repl_history=format_history(iterations),
                        iteration=f"{len(iterations) + 1}/{self.setup.max_iterations}",
                    )
                )
                text = render_turn(pred.reasoning, pred.code)
        name = lm_name(lm)
        return measured_response(text, name, m, self.pricing)


class SubCallClient(LMClient):
    """Sub-calls: ``llm_query`` prompts via the sub-call predictor, child turns via the LM."""

    def __init__(
        self,
        predictor: dspy.Predict,
        sub_lm: Any,
        *,
        snapshot: Any,
        pricing: Any = None,
        context_chars: int = 100_000,
    ) -> None:
        self.predictor = predictor
        self.sub_lm = sub_lm
        self.snapshot = snapshot
        self.pricing = pricing
        self.context_chars = context_chars
        self.model_name = lm_name(sub_lm) if sub_lm is not None else "dspy-sub"

    async def acomplete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        with dspy_scope(self.snapshot):
            lm = resolve_lm(self.sub_lm if self.sub_lm is not None else self.predictor.lm)
            name = lm_name(lm)
            if model is not None and model != name:
                raise ValueError(
                    f"model={model!r} is not available: RLMModule sends sub-calls to the DSPy LM "
                    f"{name!r}. Drop the model argument, or pass sub_lm=... to RLMModule."
                )
            if len(messages) == 1 and messages[0].get("role") == "user":
                extra = {"lm": self.sub_lm} if self.sub_lm is not None else {}
                pred, m = await measured(
                    lambda: self.predictor.acall(prompt=messages[0]["content"], **extra)
                )
                text = str(pred.response)
            else:  # a child RLM's root turn: the engine's own prompt, sent as is
                text, m = await measured(lambda: call_lm_messages(lm, messages))
        return measured_response(text, name, m, self.pricing)
