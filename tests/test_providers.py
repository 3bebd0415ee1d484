"""Every provider backend against the scripted server speaking its wire, real SDK in the loop.

``gemini`` (google-genai, ``http_options.base_url`` at 127.0.0.1: ``streamGenerateContent``),
``azure`` (openai's AsyncAzureOpenAI: deployment paths, ``api-version``, ``api-key`` or an
Entra token), ``openrouter`` and ``portkey`` (presets over the openai SDK: their headers,
OpenRouter's reported cost) and ``litellm`` (``litellm.acompletion`` at the scripted OpenAI
server). Each runs a whole completion as root and as sub model and its usage equals what the
server counted. Nothing here reached a real cloud.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network for its price map

from rlm_engine import RLM
from rlm_engine.clients import backend_factory, make_client
from rlm_engine.clients.base import compute_cost, price_for
from rlm_engine.scripted import ScriptedModel, ScriptedServer
from rlm_engine.scripted.faults import Fault
from rlm_engine.scripted.server import reported_cost

DOC = "\n".join(f"Line {i}: filler text about nothing in particular." for i in range(300))
DOC += "\nThe secret code is 7341.\n"
QUERY = "What is the secret code?"


@pytest.fixture
def server() -> Any:
    with ScriptedServer(ScriptedModel()) as s:
        yield s


def options(server: ScriptedServer, backend: str) -> dict[str, Any]:
    """How a user points each backend at a server (here: the scripted one)."""
    if backend == "gemini":
        return {"model": "gemini-2.5-flash", "base_url": server.url, "api_key": "g-key"}
    if backend == "azure":
        return {
            "model": "my-gpt-deployment",
            "base_url": server.url,
            "api_key": "az-key",
            "backend_kwargs": {"api_version": "2024-10-21"},
        }
    if backend == "openrouter":
        return {"model": "openai/gpt-5-mini", "base_url": server.base_url, "api_key": "or-key"}
    if backend == "portkey":
        return {
            "model": "gpt-4o-mini",
            "base_url": server.base_url,
            "backend_kwargs": {"portkey_api_key": "pk-key", "virtual_key": "openai-vk"},
        }
    assert backend == "litellm"
    return {"model": "openai/scripted-root", "base_url": server.base_url, "api_key": "sk"}


PROVIDERS = ["gemini", "azure", "openrouter", "portkey", "litellm"]


@pytest.mark.parametrize("backend", PROVIDERS)
def test_provider_runs_a_completion_as_root(server: ScriptedServer, backend: str) -> None:
    rlm = RLM(backend=backend, environment="local", max_retries=0, **options(server, backend))
    res = rlm.completion(DOC, query=QUERY)
    assert res.status == "final" and "7341" in res.response, res.error
    prompt, completion = server.stats.tokens()
    assert (res.usage.total.input_tokens, res.usage.total.output_tokens) == (prompt, completion)
    assert res.usage.total.calls == len(server.stats.completions()) > 1
    assert not any(r.fault for r in server.stats.log)


@pytest.mark.parametrize("backend", PROVIDERS)
def test_provider_answers_sub_calls(server: ScriptedServer, backend: str) -> None:
    """The provider as the sub model beside an OpenAI-compatible root."""
    sub = options(server, backend)
    rlm = RLM(
        backend="openai",
        model="scripted-root",
        base_url=server.base_url,
        api_key="sk",
        sub_backend=backend,
        sub_backend_kwargs={
            **sub.get("backend_kwargs", {}),
            "model_name": sub["model"],
            "base_url": sub["base_url"],
            **({"api_key": sub["api_key"]} if "api_key" in sub else {}),
        },
        environment="local",
        max_retries=0,
    )
    res = rlm.completion(DOC, query=QUERY)
    assert res.status == "final" and "7341" in res.response, res.error
    assert res.usage.sub.calls >= 1
    assert sub["model"] in str(res.usage.by_model()) or backend == "azure"


def test_gemini_wire(server: ScriptedServer) -> None:
    client = make_client("gemini", {"model_name": "gemini-2.5-flash", **_kw(server, "gemini")})
    res = client.complete(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    )
    assert res.text == "4" and not res.usage_estimated and res.input_tokens > 0
    assert res.cost == pytest.approx(
        compute_cost(price_for("gemini-2.5-flash"), res.input_tokens, res.output_tokens)
    )
    seen = server.wire_log[-1]
    assert seen["path"].endswith("/models/gemini-2.5-flash:streamGenerateContent")
    assert seen["query"] == "alt=sse" and seen["headers"]["x-goog-api-key"] == "g-key"
    assert "Be brief." in seen["system"] and "Be brief." not in seen["first"]


def test_gemini_retries_what_gemini_says_to_retry(server: ScriptedServer) -> None:
    server.inject(Fault(status=429, times=1))
    client = make_client(
        "gemini", {"model_name": "gemini-2.5-flash", "max_retries": 2, **_kw(server, "gemini")}
    )
    assert client.complete([{"role": "user", "content": "What is 2+2?"}]).text == "4"
    assert [r.status for r in server.stats.log] == [429, 200]


def test_gemini_reply_cut_at_the_cap_is_truncated(server: ScriptedServer) -> None:
    client = make_client(
        "gemini", {"model_name": "gemini-2.5-flash", "max_tokens": 3, **_kw(server, "gemini")}
    )
    res = client.complete([{"role": "user", "content": "Write a long story about a cat."}])
    assert res.truncated and res.output_tokens <= 3


def test_azure_wire_deployment_path_version_and_key(server: ScriptedServer) -> None:
    client = make_client(
        "azure",
        {"model_name": "my-gpt-deployment", "max_tokens": 100, **_kw(server, "azure")},
    )
    assert client.complete([{"role": "user", "content": "What is 2+2?"}]).text == "4"
    seen = server.wire_log[-1]
    assert seen["path"] == "/openai/deployments/my-gpt-deployment/chat/completions"
    assert seen["query"] == "api-version=2024-10-21"
    assert seen["headers"]["api-key"] == "az-key" and seen["cap"] == 100


def test_azure_entra_token_provider(server: ScriptedServer) -> None:
    async def token() -> str:
        return "entra-token"

    client = make_client(
        "azure",
        {
            "model_name": "dep",
            "base_url": server.url,
            "azure_ad_token_provider": token,
            "api_version": "2024-10-21",
        },
    )
    import asyncio

    assert asyncio.run(client.acomplete([{"role": "user", "content": "What is 2+2?"}])).text
    assert server.wire_log[-1]["headers"]["authorization"] == "Bearer entra-token"


def test_azure_says_what_it_needs() -> None:
    with pytest.raises(ValueError, match="deployment"):
        make_client("azure", {"base_url": "https://x.openai.azure.com", "api_key": "k"})
    with pytest.raises(ValueError, match="endpoint"):
        make_client("azure", {"model_name": "dep", "api_key": "k"})


def test_openrouter_reported_cost_wins_over_the_table(server: ScriptedServer) -> None:
    client = make_client(
        "openrouter", {"model_name": "openai/gpt-5-mini", **_kw(server, "openrouter")}
    )
    res = client.complete([{"role": "user", "content": "What is 2+2?"}])
    assert res.cost == pytest.approx(reported_cost((res.input_tokens, res.output_tokens)))
    table = price_for("openai/gpt-5-mini")
    assert table is not None  # the table knows the model; the provider's figure still wins
    assert server.wire_log[-1]["headers"]["authorization"] == "Bearer or-key"


def test_portkey_headers(server: ScriptedServer) -> None:
    client = make_client(
        "portkey",
        {
            "model_name": "gpt-4o-mini",
            "base_url": server.base_url,
            "portkey_api_key": "pk",
            "config": {"retry": {"attempts": 2}},
            "metadata": {"user": "u1"},
        },
    )
    assert client.complete([{"role": "user", "content": "What is 2+2?"}]).text == "4"
    headers = server.wire_log[-1]["headers"]
    assert headers["x-portkey-api-key"] == "pk"
    assert headers["x-portkey-config"] == '{"retry": {"attempts": 2}}'
    assert headers["x-portkey-metadata"] == '{"user": "u1"}'
    with pytest.raises(ValueError, match="virtual_key"):
        make_client("portkey", {"model_name": "m", "portkey_api_key": "pk"})


def test_litellm_usage_and_its_cost(server: ScriptedServer) -> None:
    client = make_client(
        "litellm", {"model_name": "openai/gpt-4o-mini", "max_tokens": 64, **_kw(server, "litellm")}
    )
    res = client.complete([{"role": "user", "content": "What is 2+2?"}])
    assert res.text == "4" and not res.usage_estimated
    assert server.stats.tokens() == (res.input_tokens, res.output_tokens)
    assert res.cost is not None and res.cost > 0  # LiteLLM's own price for gpt-4o-mini
    assert server.wire_log[-1]["cap"] == 64


@pytest.mark.parametrize(
    ("backend", "module", "extra"),
    [
        ("gemini", "google.genai", "gemini"),
        ("litellm", "litellm", "litellm"),
    ],
)
def test_missing_sdk_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, backend: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    monkeypatch.delitem(sys.modules, f"rlm_engine.clients.{backend}", raising=False)
    if module == "google.genai":
        monkeypatch.delattr(importlib.import_module("google"), "genai", raising=False)
    with pytest.raises(ImportError, match=rf"pip install 'rlm-integrations\[{extra}\]'"):
        backend_factory(backend)


def _kw(server: ScriptedServer, backend: str) -> dict[str, Any]:
    opts = options(server, backend)
    return {
        "base_url": opts["base_url"],
        **({"api_key": opts["api_key"]} if "api_key" in opts else {}),
        **opts.get("backend_kwargs", {}),
    }


@pytest.mark.parametrize("backend", ["gemini", "azure", "litellm"])
def test_provider_in_the_langchain_form(server: ScriptedServer, backend: str) -> None:
    """A provider name is a backend of RLMChatModel too (its fields are the config's)."""
    from langchain_core.messages import HumanMessage

    from rlm_integrations.langchain import RLMChatModel

    llm = RLMChatModel(backend=backend, environment="local", **options(server, backend))
    reply = llm.invoke([HumanMessage(f"{QUERY}\n\n{DOC}")])
    assert "7341" in str(reply.content)
    assert len(server.stats.completions()) > 1


def test_system_as_user_option_on_the_anthropic_wire(server: ScriptedServer) -> None:
    """The config's option reaches a backend with a native system parameter too."""
    rlm = RLM(
        backend="anthropic",
        model="scripted-root",
        base_url=server.url,
        api_key="sk",
        system_as_user=True,
        environment="local",
    )
    res = rlm.completion(DOC, query=QUERY)
    assert res.status == "final" and "7341" in res.response
    first = server.wire_log[0]
    assert first["system"] == "" and "llm_query" in first["first"]


def test_azure_sync_call_with_an_async_token_provider(server: ScriptedServer) -> None:
    async def token() -> str:
        return "entra-sync"

    client = make_client(
        "azure",
        {"model_name": "dep", "base_url": server.url, "azure_ad_token_provider": token},
    )
    assert client.complete([{"role": "user", "content": "What is 2+2?"}]).text == "4"
    assert server.wire_log[-1]["headers"]["authorization"] == "Bearer entra-sync"


def test_window_from_model_listings() -> None:
    """OpenRouter's listing (context_length), vLLM's (max_model_len), llama.cpp's (meta)."""
    from rlm_engine.clients.server_info import props_facts, window_from_models

    openrouter = {
        "data": [
            {"id": "openai/gpt-5-mini", "context_length": 400_000},
            {"id": "google/gemma-2-9b-it", "context_length": 8_192},
        ]
    }
    assert window_from_models(openrouter, "google/gemma-2-9b-it") == (
        8_192,
        "/models context_length",
    )
    assert window_from_models(openrouter, "not/listed") is None  # never another model's
    vllm = {"data": [{"id": "Qwen/Qwen2.5-7B", "max_model_len": 32_768}]}
    assert window_from_models(vllm, None) == (32_768, "/models max_model_len (vLLM)")
    llama = {"data": [{"id": "/m/x.gguf", "meta": {"n_ctx_train": 131_072}}]}
    assert window_from_models(llama, "/m/x.gguf")[0] == 131_072  # type: ignore[index]
    assert props_facts({"default_generation_settings": {"n_ctx": 4096}, "chat_template": "t"}) == (
        4096,
        "t",
    )
