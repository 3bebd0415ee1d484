"""LangChainClient: any LangChain chat model as an RLM root/sub LM, with exact usage."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import FakeListChatModel

from rlm_engine.clients import make_client
from rlm_engine.rlm import RLM
from rlm_engine.scripted import Reply, ScriptedModel
from rlm_integrations.langchain import LangChainClient, ScriptedChatModel
from rlm_integrations.langchain.client import to_langchain_messages


def needle_doc(n_lines: int = 3000) -> str:
    lines = [f"Line {i}: filler text about nothing in particular." for i in range(n_lines)]
    lines[n_lines // 2] = "The secret code is 4729."
    return "\n".join(lines)


class Recorder(BaseCallbackHandler):
    """Collects what LangChain reports about each inner chat-model run."""

    def __init__(self) -> None:
        self.tags: list[list[str]] = []
        self.usage: list[dict[str, int]] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
        self.tags.append(list(kw.get("tags") or []))

    def on_llm_end(self, response: Any, **kw: Any) -> None:
        self.usage.append(dict(response.generations[0][0].message.usage_metadata))


def test_make_client_routes_chat_models_here() -> None:
    client = make_client(ScriptedChatModel(model="scripted-root"))
    assert isinstance(client, LangChainClient)
    assert client.model_name == "scripted-root"


def test_rlm_over_langchain_models_answers_with_exact_usage() -> None:
    rec = Recorder()
    root = ScriptedChatModel(model="scripted-root")
    sub = ScriptedChatModel(model="scripted-sub")
    rlm = RLM(
        backend=root,
        backend_kwargs={"callbacks": [rec]},
        sub_backend=sub,
        sub_backend_kwargs={"callbacks": [rec]},
        max_iterations=8,
    )
    res = rlm.completion(needle_doc(), "What is the secret code?")
    assert res.status == "final"
    assert res.response == "4729"
    # Every inner call went through LangChain and was tagged out of `messages` streams.
    assert len(rec.tags) == res.usage.calls
    assert all("nostream" in tags for tags in rec.tags)
    # The ledger holds exactly what the providers reported.
    assert res.usage.input_tokens == sum(u["input_tokens"] for u in rec.usage)
    assert res.usage.output_tokens == sum(u["output_tokens"] for u in rec.usage)
    models = res.usage.by_model()
    assert set(models) == {"scripted-root", "scripted-sub"}
    assert models["scripted-root"].calls == res.usage.root.calls == len(res.iterations)


async def test_model_override_uses_a_copy_with_that_model() -> None:
    scripted = ScriptedModel()
    scripted.add_rule({"model": "other-model"}, "from the other model")
    client = LangChainClient(ScriptedChatModel(model="base", scripted=scripted), pricing=(1, 2))
    resp = await client.acomplete([{"role": "user", "content": "hi"}], model="other-model")
    assert resp.text == "from the other model"
    assert resp.model == "other-model"
    assert resp.input_tokens >= 1 and resp.output_tokens >= 1
    assert resp.cost == pytest.approx((resp.input_tokens * 1 + resp.output_tokens * 2) / 1e6)
    assert client.chat_model.model_name == "base"  # the original is untouched


async def test_named_models_are_used_for_sub_calls() -> None:
    other = FakeListChatModel(responses=["named answer"])
    client = LangChainClient(ScriptedChatModel(), models={"fast": other})
    resp = await client.acomplete([{"role": "user", "content": "q"}], model="fast")
    assert resp.text == "named answer"
    assert (resp.input_tokens, resp.output_tokens) == (0, 0)  # the fake reports no usage


async def test_model_without_model_field_explains_how_to_name_models() -> None:
    client = LangChainClient(FakeListChatModel(responses=["x"]))
    with pytest.raises(ValueError, match="models=\\{name: chat_model\\}"):
        await client.acomplete([{"role": "user", "content": "q"}], model="gpt-x")


async def test_timeout_is_enforced() -> None:
    scripted = ScriptedModel()
    scripted.add_rule(".*", Reply(text="late"), latency=5.0)
    client = LangChainClient(ScriptedChatModel(scripted=scripted))
    with pytest.raises(TimeoutError):
        await client.acomplete([{"role": "user", "content": "q"}], timeout=0.05)


def test_stream_tokens_drops_the_nostream_tag() -> None:
    assert "nostream" in LangChainClient(ScriptedChatModel()).tags
    assert "nostream" not in LangChainClient(ScriptedChatModel(), stream_tokens=True).tags


def test_message_conversion() -> None:
    msgs = to_langchain_messages(
        [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": "a"},
        ]
    )
    assert [m.type for m in msgs] == ["system", "human", "ai"]
    with pytest.raises(ValueError, match="role 'tool'"):
        to_langchain_messages([{"role": "tool", "content": "x"}])


def test_rejects_non_chat_models() -> None:
    with pytest.raises(TypeError, match="BaseChatModel"):
        LangChainClient(object())  # type: ignore[arg-type]


def test_profile_sets_context_window() -> None:
    model = ScriptedChatModel(profile={"max_input_tokens": 1000})
    assert LangChainClient(model).context_chars == 4000
