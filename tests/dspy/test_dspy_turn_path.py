"""RLMModule conversation turns say why they ran the loop (the conversation rule)."""

from __future__ import annotations

import dspy
from dspy_support import chat_reply, is_rlm_turn

from rlm_engine.conversation import TURN_PATH_REASON
from rlm_engine.scripted import ScriptedModel
from rlm_integrations.dspy import RLMModule

DOC = "\n".join(f"record {i}: value={i * 7}" for i in range(40))


def test_conversation_turns_give_their_reason(
    sub_lm: dspy.LM, with_root_lm: dspy.LM, dspy_model: ScriptedModel
) -> None:
    dspy_model.add_rule(is_rlm_turn, chat_reply(reasoning="Done.", code="SUBMIT(answer='ok')"))
    module = RLMModule("document, question -> answer", sub_lm=sub_lm)
    with module.conversation() as chat:
        preds = [chat(document=DOC, question="One?"), chat(document=DOC, question="Two?")]
    for pred in preds:
        assert pred.answer == "ok"
        assert (pred.path, pred.path_reason) == ("rlm", TURN_PATH_REASON)
