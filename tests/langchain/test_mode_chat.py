"""``RLMChatModel(mode=...)``: the generated field reaches the router, and the message's
metadata says which path answered and why (on the OpenAI and the Anthropic wire)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from rlm_engine.scripted import ScriptedModel, ScriptedServer
from rlm_integrations.langchain import RLMChatModel
from tests.support.mode_support import (
    BACKENDS,
    QUESTION,
    completions,
    haystack,
    server_tokens,
    teach_direct,
    wire_options,
)


def chat(scripted_server: ScriptedServer, backend: str, **fields: Any) -> RLMChatModel:
    opts = wire_options(scripted_server, backend)
    opts.pop("max_retries")
    return RLMChatModel(**opts, environment="local", max_iterations=8, **fields)


@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_small_context_is_one_call_and_the_metadata_says_so(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel, backend: str
) -> None:
    seen = teach_direct(scripted_model)
    msg = chat(scripted_server, backend, mode="auto").invoke(QUESTION, context=haystack("2718"))
    assert msg.content == "2718"
    meta = msg.response_metadata
    assert meta["path"] == "direct" and "fit under" in meta["path_reason"]
    assert meta["iterations"] == 0 and meta["usage"]["total"]["calls"] == 1
    assert len(seen) == 1 and len(completions(scripted_server)) == 1
    # usage appears once: on the direct call's own llm run (tests/test_direct_tracing.py)
    assert msg.usage_metadata is not None and msg.usage_metadata["total_tokens"] == 0
    assert meta["usage"]["total"]["input_tokens"] + meta["usage"]["total"][
        "output_tokens"
    ] == server_tokens(scripted_server)


@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_big_context_runs_the_loop(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel, backend: str
) -> None:
    seen = teach_direct(scripted_model)
    llm = chat(scripted_server, backend, mode="auto", direct_threshold_tokens=200)
    msg = llm.invoke(QUESTION, context=haystack("2718"))
    assert msg.content == "2718" and seen == []
    assert msg.response_metadata["path"] == "rlm"
    assert "exceed 200" in msg.response_metadata["path_reason"]
    assert msg.response_metadata["iterations"] >= 1


class Code(BaseModel):
    code: str


def test_structured_output_needs_the_loop_and_says_why(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel
) -> None:
    seen = teach_direct(scripted_model)
    llm = chat(scripted_server, "openai", mode="direct")
    out = llm.with_structured_output(Code, include_raw=True).invoke(
        QUESTION, context=haystack("2718")
    )
    assert seen == [] and out["raw"].response_metadata["path"] == "rlm"
    assert "structured output" in out["raw"].response_metadata["path_reason"]
