"""``RLMModule(mode=...)``: the direct call is one ``dspy.Predict`` of the task signature
(DSPy frames the inputs and parses the typed outputs), counted at the server; a big input
runs the RLM loop; a provider's context-length error falls back to it; the prediction says
which path ran and why."""

from __future__ import annotations

import json

import dspy
import pytest

from rlm_engine.scripted import Request, ScriptedModel, ScriptedServer
from rlm_engine.scripted.reader import answer_from_text
from rlm_integrations.dspy import RLMModule
from tests.dspy.dspy_support import chat_reply, haystack
from tests.support.mode_support import refused

QUESTION = "What is the access code for vault 7?"
NEEDLE = "The access code for vault 7 is 1259."


def is_direct_predict(req: Request) -> bool:
    """The task signature's own request: its fields, no RLM turn or sub-call fields."""
    system = req.system
    return "`document`" in system and "`repl_history`" not in system and "`prompt`" not in system


def teach_direct(model: ScriptedModel) -> list[Request]:
    seen: list[Request] = []

    def respond(req: Request) -> str:
        seen.append(req)
        text = req.last_user
        return chat_reply(answer=answer_from_text(QUESTION, text))

    model.add_rule(is_direct_predict, respond, name="direct-predict")
    return seen


def lm_for(server: ScriptedServer) -> dspy.LM:
    return dspy.LM("openai/scripted-root", api_base=server.base_url, api_key="x", cache=False)


def test_auto_small_input_is_one_predict_call(
    scripted_server: ScriptedServer, dspy_model: ScriptedModel
) -> None:
    seen = teach_direct(dspy_model)
    module = RLMModule("document, question -> answer", mode="auto", environment="local")
    with dspy.context(lm=lm_for(scripted_server), track_usage=True):
        pred = module(document=haystack(NEEDLE, lines=20, at=10), question=QUESTION)
    assert pred.answer == "1259" and pred.path == "direct" and "fit under" in pred.path_reason
    assert pred.trajectory == [] and len(seen) == 1
    completions = scripted_server.stats.completions()
    assert len(completions) == 1 and pred.usage["total"]["calls"] == 1
    tokens = sum(r.prompt_tokens + r.completion_tokens for r in completions)
    assert pred.usage["total"]["input_tokens"] + pred.usage["total"]["output_tokens"] == tokens


def test_auto_big_input_runs_the_loop(
    scripted_server: ScriptedServer, dspy_model: ScriptedModel
) -> None:
    seen = teach_direct(dspy_model)
    module = RLMModule(
        "document, question -> answer", mode="auto", direct_threshold_tokens=500,
        environment="local",
    )  # fmt: skip
    with dspy.context(lm=lm_for(scripted_server)):
        pred = module(document=haystack(NEEDLE), question=QUESTION)
    assert pred.path == "rlm" and "exceed 500" in pred.path_reason
    assert seen == [] and len(pred.trajectory) >= 1


def test_context_length_error_falls_back_to_the_loop(dspy_model: ScriptedModel) -> None:
    seen = teach_direct(dspy_model)
    with ScriptedServer(dspy_model, context_window=6_000) as server:
        module = RLMModule(
            "document, question -> answer", mode="auto", direct_threshold_tokens=100_000,
            environment="local",
        )  # fmt: skip
        with dspy.context(lm=lm_for(server)):
            pred = module(document=haystack(NEEDLE), question=QUESTION)
        assert pred.path == "rlm" and "refused the direct prompt" in pred.path_reason
        assert len(refused(server)) >= 1 and seen == []


def test_forced_direct_that_does_not_fit_is_a_clear_error(dspy_model: ScriptedModel) -> None:
    teach_direct(dspy_model)
    with ScriptedServer(dspy_model, context_window=2_000) as server:
        module = RLMModule("document, question -> answer", mode="direct")
        with dspy.context(lm=lm_for(server)), pytest.raises(Exception, match="mode='auto'"):
            module(document=haystack(NEEDLE), question=QUESTION)


def test_the_adapters_json_fallback_is_two_calls_counted(
    scripted_server: ScriptedServer, dspy_model: ScriptedModel
) -> None:
    prose = "Let me read the document first and then answer."
    dspy_model.add_rule(is_direct_predict, [prose, json.dumps({"answer": "1259"})])
    module = RLMModule("document, question -> answer", mode="direct")
    with dspy.context(lm=lm_for(scripted_server)):
        pred = module(document=NEEDLE, question=QUESTION)
    served = scripted_server.stats.completions()
    assert pred.answer == "1259" and pred.path == "direct" and len(served) == 2
    assert pred.usage["total"]["calls"] == 2
    tokens = sum(r.prompt_tokens + r.completion_tokens for r in served)
    assert pred.usage["total"]["total_tokens"] == tokens
