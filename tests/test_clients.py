"""The LM clients on their own: sync and async paths, usage, base URL rules, transports."""

from __future__ import annotations

import asyncio

import anthropic
import httpx2
import openai
import pytest

from rlm_engine.clients.anthropic import AnthropicClient
from rlm_engine.clients.openai import DEFAULT_LOCAL_URL, OpenAIClient, resolve_base_url

MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+3?"}]


def test_openai_sync_and_async_report_usage(scripted_server):
    client = OpenAIClient("scripted-sub", scripted_server.base_url, "sk-test")
    sync = client.complete(MSGS)
    assert sync.text.strip() == "5" and sync.model == "scripted-sub"
    log = scripted_server.stats.log[-1]
    assert (sync.input_tokens, sync.output_tokens) == (log.prompt_tokens, log.completion_tokens)


async def test_openai_async(scripted_server):
    client = OpenAIClient("scripted-sub", scripted_server.base_url, "sk-test")
    resp = await client.acomplete(MSGS)
    assert resp.text.strip() == "5" and resp.input_tokens > 0
    await client.aclose()


def test_anthropic_sync_and_async(scripted_server):
    client = AnthropicClient("scripted-sub", scripted_server.url, "sk-ant-test")
    resp = client.complete(MSGS)
    assert resp.text.strip() == "5"
    log = scripted_server.stats.log[-1]
    assert log.path == "/v1/messages"
    assert (resp.input_tokens, resp.output_tokens) == (log.prompt_tokens, log.completion_tokens)


def test_user_http_client_is_used(scripted_server):
    seen: list[str] = []
    transport = httpx2.AsyncHTTPTransport()

    async def hook(request: httpx2.Request) -> None:
        seen.append(str(request.url))

    http = openai.DefaultAsyncHttpxClient(transport=transport, event_hooks={"request": [hook]})
    client = OpenAIClient("scripted-sub", scripted_server.base_url, "x", http_client=http)
    asyncio.run(client.acomplete(MSGS))
    assert seen == [f"{scripted_server.base_url}/chat/completions"]


@pytest.mark.parametrize(
    ("env", "api_key", "expected"),
    [
        ({}, None, DEFAULT_LOCAL_URL),
        ({}, "sk-explicit", None),  # an explicit key means OpenAI itself
        ({"OPENAI_API_KEY": "sk-env"}, None, None),
        ({"RLM_API_URL": "http://h:1/v1", "OPENAI_API_KEY": "sk"}, None, "http://h:1/v1"),
        ({"OPENAI_BASE_URL": "http://o:2/v1"}, None, "http://o:2/v1"),
    ],
)
def test_base_url_resolution(monkeypatch, env, api_key, expected):
    for var in ("RLM_API_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert resolve_base_url(None, api_key) == expected


def test_default_model_on_openai_is_not_a_listed_one(monkeypatch):
    monkeypatch.delenv("RLM_API_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert OpenAIClient(api_key="sk-x").model_name == "gpt-5-mini"
    assert OpenAIClient(base_url="http://127.0.0.1:9/v1").model_name == "auto"


def test_anthropic_sdk_error_surfaces_after_retries(scripted_server):
    from rlm_engine.scripted import Fault

    scripted_server.inject(Fault(status=500, times=None))
    client = AnthropicClient("scripted-sub", scripted_server.url, "k", max_retries=1)
    with pytest.raises(anthropic.InternalServerError):
        client.complete(MSGS)
    assert len(scripted_server.stats.log) == 2  # first try + one retry
