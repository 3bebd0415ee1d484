"""Engine clients whose "LM call" is a call of one of RLMModule's DSPy predictors.

``RootTurnClient`` answers the engine's root calls with the root ``dspy.Predict`` (called
through ``acall``, so DSPy records the trace optimizers learn from), and the engine's
out-of-turns request (flagged by ``rlm_engine.partial_answer.is_final_answer_request``,
not recognized by its text) with the extract predictor. ``SubCallClient`` sends every
``llm_query`` prompt through the sub-call predictor and child-RLM turns straight to the
sub LM. Both are created per module call and hold no state beyond that call.

A reply DSPy's adapter cannot parse is a bad turn, not a failed run
(:mod:`rlm_integrations.dspy.parse_failures`), and its tokens are counted like any other
call's: a root turn becomes feedback for the next turn, a sub-call answers with an error
string, the extract predictor with an error (the engine then looks in REPL variables).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dspy

from rlm_engine.clients.base import LMClient
from rlm_engine.partial_answer import is_final_answer_request
from rlm_engine.types import LMResponse, Message
from rlm_integrations.dspy.cut_replies import render_cut_turn
from rlm_integrations.dspy.lm_client import (
    Measured,
    UnparsedReply,
    call_lm_messages,
    dspy_scope,
    lm_name,
    measured,
    measured_response,
    resolve_lm,
)
from rlm_integrations.dspy.outputs import encode_answer
from rlm_integrations.dspy.parse_failures import (
    MAX_CONSECUTIVE_PARSE_FAILURES,
    RootReplyUnparseable,
    describe_parse_error,
    render_unparsed_turn,
)
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
        #: Root turns in a row whose reply could not be parsed.
        self.parse_failures = 0

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
            name = lm_name(lm)
            try:
                if is_final_answer_request():  # flagged by the engine, whatever the wording
                    text, m = await self._extract(iterations, lm)
                else:
                    text, m = await self._turn(iterations, lm)
            except UnparsedReply as e:
                if e.measured.truncated and not is_final_answer_request():
                    return self._cut(None, name, e.measured)  # cut, not malformed
                return self._unparsed(e, name)
        self.parse_failures = 0
        return self._response(text, name, m)

    def _response(self, text: str, name: str, m: Measured) -> LMResponse:
        """The engine's response for one predictor call. When it made several LM calls
        (the adapter's JSON fallback), all but the last are counted here, each as a call,
        so the run's usage and call budget see every request the LM served."""
        assert self.session is not None
        earlier, last = m.split()
        for each in earlier:
            self.session.record_usage(measured_response("", name, each, self.pricing), "root")
        return measured_response(text, name, last, self.pricing)

    async def _extract(self, iterations: list[Any], lm: Any) -> tuple[str, Measured]:
        pred, m = await measured(
            lambda: self.extract.acall(
                variables_info=self.setup.variables_info,
                repl_history=format_history(iterations),
            ),
            lm,
        )
        values = {name: pred[name] for name in self.task.output_fields}
        return f"FINAL({encode_answer(values)})", m

    async def _turn(self, iterations: list[Any], lm: Any) -> tuple[str, Measured]:
        signature = call_signature(self.root.signature, self.setup.runtime_note)
        pred, m = await measured(
            lambda: self.root.acall(
                signature=signature,
                variables_info=self.setup.variables_info,
                repl_history=format_history(iterations),
                iteration=f"{len(iterations) + 1}/{self.setup.max_iterations}",
            ),
            lm,
        )
        if m.truncated:  # the code field is cut: it must not run
            return render_cut_turn(pred.reasoning, m.split()[1].output_tokens), m
        return render_turn(pred.reasoning, pred.code), m

    def _cut(self, reasoning: str | None, name: str, m: Measured) -> LMResponse:
        """A root reply cut so early that the adapter found no fields: a cut turn (the
        root is told about the cap), not a format error."""
        self.parse_failures = 0
        return self._response(render_cut_turn(reasoning or "", m.split()[1].output_tokens), name, m)

    def _unparsed(self, e: UnparsedReply, name: str) -> LMResponse:
        """An unparseable reply: its tokens counted, then a turn that says what was wrong
        (an error for the extract call), or an error after too many in a row."""
        assert self.session is not None
        feedback = describe_parse_error(e.error)
        if is_final_answer_request():
            # Counted here, as the engine records no failed call; the failure makes the
            # engine look for an answer in REPL variables (an empty reply would not).
            resp = self._response("", name, e.measured)
            self.session.record_usage(resp, role="root")
            raise RootReplyUnparseable(f"The extract predictor's reply: {feedback}") from e.error
        self.parse_failures += 1
        resp = self._response(render_unparsed_turn(feedback), name, e.measured)
        if self.parse_failures < MAX_CONSECUTIVE_PARSE_FAILURES:
            return resp
        self.session.record_usage(resp, role="root")  # the engine records no failed call
        raise RootReplyUnparseable(
            f"{self.parse_failures} root replies in a row could not be parsed by DSPy's "
            f"adapter; the last: {feedback} Use an LM that follows the DSPy format, or set "
            "another adapter (dspy.configure(adapter=dspy.JSONAdapter()))."
        ) from e.error


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
                try:
                    pred, m = await measured(
                        lambda: self.predictor.acall(prompt=messages[0]["content"], **extra), lm
                    )
                except UnparsedReply as e:  # the REPL gets an error string; tokens counted
                    text = (
                        "Error: the sub-model's answer could not be parsed: "
                        f"{describe_parse_error(e.error)}"
                    )
                    return measured_response(text, name, e.measured, self.pricing)
                text = str(pred.response)
            else:  # a child RLM's root turn: the engine's own prompt, sent as is
                text, m = await measured(lambda: call_lm_messages(lm, messages), lm)
        return measured_response(text, name, m, self.pricing)
