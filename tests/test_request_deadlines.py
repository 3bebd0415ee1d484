"""Every LM request has a total deadline, and client errors say where they came from.

A server that trickles one byte every 0.1 s restarts an HTTP read timeout forever, and a
silent one holds every retry for the whole timeout: only a deadline for the request as a
whole, retries included, ends them. The servers here are raw sockets on 127.0.0.1
(``tests/support/raw_http.py``); the tests count the requests the server saw instead of
timing anything, and guard every call with a generous outer bound so that a regression
fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest
from support.raw_http import RawServer

from rlm_engine import RLM, RLMConfig
from rlm_engine.clients.anthropic import AnthropicClient
from rlm_engine.clients.base import ReplyNotJSONError, explained
from rlm_engine.clients.configured import client_kwargs
from rlm_engine.clients.deadline import RequestTimeoutError
from rlm_engine.clients.openai import OpenAIClient
from rlm_engine.config import DEFAULT_REQUEST_TIMEOUT

MSGS = [{"role": "user", "content": "What is 2+3?"}]
GUARD = 60.0  # far above every bound under test: reaching it means the call hung


def _client(kind: str, server: RawServer, **kw: Any) -> OpenAIClient | AnthropicClient:
    if kind == "openai":
        return OpenAIClient("m", server.base_url, "sk-test", **kw)
    return AnthropicClient("m", server.url, "sk-ant-test", **kw)


def _in_thread(fn: Callable[[], Any]) -> Any:
    """Run a blocking call with the GUARD: a call that hangs fails the test, not the suite."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(("ok", fn()))
        except BaseException as e:  # handed back to the test
            out.append(("err", e))

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(GUARD)
    assert not t.is_alive(), f"the call did not end within {GUARD} s: it hangs"
    kind, value = out[0]
    if kind == "err":
        raise value
    return value


# ------------------------------------------------------------------ the clients, async and sync


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("behaviour", ["trickle", "silent"])
def test_async_request_ends_at_its_deadline_retries_included(kind: str, behaviour: str) -> None:
    with RawServer(behaviour) as server:  # type: ignore[arg-type]
        client = _client(kind, server, max_retries=3)

        async def call() -> Any:
            return await asyncio.wait_for(client.acomplete(MSGS, timeout=1.0), GUARD)

        with pytest.raises(RequestTimeoutError) as info:
            asyncio.run(call())
        # One attempt used the whole bound: the SDK's retries did not get a fresh timeout each.
        assert server.requests == 1
    message = str(info.value)
    assert "request timeout of 1 s (retries included)" in message
    assert f"127.0.0.1:{server.port}" in message


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("behaviour", ["trickle", "silent"])
def test_sync_request_ends_at_its_deadline(kind: str, behaviour: str) -> None:
    with RawServer(behaviour) as server:  # type: ignore[arg-type]
        client = _client(kind, server, max_retries=3, timeout=1.0)  # the client's own bound
        with pytest.raises(RequestTimeoutError, match="request timeout of 1 s"):
            _in_thread(lambda: client.complete(MSGS))
        assert server.requests == 1  # retries after the deadline are refused before sending


def test_the_clients_own_bound_applies_when_the_caller_gives_none() -> None:
    with RawServer("trickle") as server:
        client = OpenAIClient("m", server.base_url, "sk-test", timeout=0.5, max_retries=1)
        with pytest.raises(RequestTimeoutError, match="request timeout of 0.5 s"):
            asyncio.run(asyncio.wait_for(client.acomplete(MSGS, timeout=None), GUARD))


def test_the_default_bound_is_finite_in_every_form() -> None:
    from rlm_integrations.langchain import RLMChatModel

    assert math.isfinite(DEFAULT_REQUEST_TIMEOUT) and DEFAULT_REQUEST_TIMEOUT > 0
    assert RLMConfig().reply.timeout == DEFAULT_REQUEST_TIMEOUT
    assert client_kwargs(RLMConfig(backend="openai"))["timeout"] == DEFAULT_REQUEST_TIMEOUT
    assert RLMChatModel().engine_config().reply.timeout == DEFAULT_REQUEST_TIMEOUT
    # A client made without the config (a user's own) is bounded too.
    assert OpenAIClient("m", "http://127.0.0.1:1/v1").timeout == DEFAULT_REQUEST_TIMEOUT
    assert AnthropicClient("m", "http://127.0.0.1:1").timeout == DEFAULT_REQUEST_TIMEOUT


# ------------------------------------------------------------------ through the entry points


def test_rlm_completion_against_a_trickling_server_ends_with_a_clear_error() -> None:
    with RawServer("trickle") as server:
        rlm = RLM(backend="openai", base_url=server.base_url, model="m", timeout=1.0)
        res = _in_thread(lambda: rlm.completion("some context", "What is 2+3?"))
        assert server.requests == 1
    assert res.status == "error"
    assert "RequestTimeoutError" in res.error and "request timeout of 1 s" in res.error
    assert server.base_url in res.error


def test_rlm_chat_model_invoke_against_a_silent_server_raises_within_the_bound() -> None:
    from rlm_integrations.langchain import RLMChatModel

    with RawServer("silent") as server:
        llm = RLMChatModel(base_url=server.base_url, model="m", timeout=1.0, max_retries=3)
        with pytest.raises(Exception, match="request timeout of 1 s") as info:
            _in_thread(lambda: llm.invoke("What is 2+3?"))
        assert server.requests == 1
    assert server.base_url in str(info.value)


async def test_langchain_client_bounds_a_chat_model_that_never_answers() -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from rlm_integrations.langchain.client import LangChainClient

    class Silent(FakeListChatModel):
        async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(3600)

    client = LangChainClient(Silent(responses=["never"]))
    with pytest.raises(RequestTimeoutError, match=r"from Silent \(.*\) within the request"):
        await asyncio.wait_for(client.acomplete(MSGS, timeout=0.5), GUARD)


# ------------------------------------------------------------------ errors that point the right way


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_connection_error_names_the_url(kind: str) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    if kind == "openai":
        client: OpenAIClient | AnthropicClient = OpenAIClient("m", url + "/v1", "k", max_retries=0)
        error: type[Exception] = openai.APIConnectionError
    else:
        client, error = AnthropicClient("m", url, "k", max_retries=0), anthropic.APIConnectionError
    for call in (lambda: asyncio.run(client.acomplete(MSGS)), lambda: client.complete(MSGS)):
        with pytest.raises(error) as info:  # the SDK's type, so callers' handlers still work
            call()
        assert f"cannot reach the server at {url}" in str(info.value)


def test_the_auto_model_advice_names_every_forms_spelling() -> None:
    client = OpenAIClient(None, f"http://127.0.0.1:{_closed_port()}/v1", "k", max_retries=0)
    with pytest.raises(RuntimeError) as info:
        asyncio.run(client.acomplete(MSGS))
    message = str(info.value)
    for spelling in ("RLM(model=...)", "RLMChatModel(model=...)", "rlm run --model"):
        assert spelling in message
    assert "model_name" not in message and "/models" in message


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("body", [b"<html>502 Bad Gateway</html>", b"\x00a\x00"])
def test_a_body_that_is_not_json_is_said_so(kind: str, body: bytes) -> None:
    with RawServer("body", body=body) as server:
        client = _client(kind, server, max_retries=0)
        with pytest.raises(ReplyNotJSONError) as info:
            asyncio.run(client.acomplete(MSGS))
        with pytest.raises(ReplyNotJSONError):
            client.complete(MSGS)
    message = str(info.value)
    assert f"the server at {server.url}" in message
    assert "answered with a body that is not JSON" in message


def test_a_codec_error_on_the_body_is_not_json_too() -> None:
    """``json.loads`` on bytes guesses UTF-16 from a leading NUL and fails with a codec error."""
    try:
        json.loads(b"\x00a\x00b\x00")
    except UnicodeDecodeError as codec_error:
        better = explained(codec_error, "http://x/v1", 1.0, sdk=openai)
    assert isinstance(better, ReplyNotJSONError)
    assert "utf-16" not in str(better) and "is not JSON" in str(better)
