"""Conversation turns say why they ran the loop: ``path_reason`` is the conversation rule
(``mode`` does not route turns), on the engine's ``Conversation`` and on LangChain
``RLMChatModel`` calls that continue an earlier one."""

from __future__ import annotations

from langchain_core.messages import HumanMessage

from rlm_engine import RLM
from rlm_engine.conversation import TURN_PATH_REASON
from rlm_engine.scripted import ScriptedModel, ScriptedServer
from rlm_integrations.langchain import RLMChatModel
from rlm_integrations.langchain.conversations import STORE

DOC = "\n".join(f"record {i}: value={i * 7}" for i in range(40))
OPTIONS = {
    "backend": "openai",
    "model": "scripted-root",
    "sub_model": "scripted-sub",
    "api_key": "sk-test",
    "environment": "local",
}


def test_engine_conversation_turns_give_their_reason(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    scripted_model.add_rule(lambda r: r.is_rlm_root, ["FINAL(ok)"])
    rlm = RLM(base_url=scripted_server.base_url, **OPTIONS)
    with rlm.conversation(DOC) as conv:
        results = [conv.send("What is record 3?"), conv.send("And record 4?")]
    for res in results:
        assert res.status == "final"
        assert (res.path, res.path_reason) == ("rlm", TURN_PATH_REASON)
    assert "REPL outlives each turn" in TURN_PATH_REASON


def test_continued_chat_model_calls_give_the_turn_reason(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    scripted_model.add_rule(lambda r: r.is_rlm_root, ["FINAL(ok)"])
    llm = RLMChatModel(base_url=scripted_server.base_url, **OPTIONS)
    try:
        history = [HumanMessage("What is record 3?")]
        one = llm.invoke(history, context=DOC)
        two = llm.invoke([*history, one, HumanMessage("And record 4?")], context=DOC)
    finally:
        STORE.loop.run(STORE.aclose_all())
    assert two.content and two.response_metadata["status"] == "final"
    assert two.response_metadata["path"] == "rlm"
    assert two.response_metadata["path_reason"] == TURN_PATH_REASON
