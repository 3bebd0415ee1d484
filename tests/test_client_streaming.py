"""The OpenAI and Anthropic clients stream every request (issue 15, items 2-4).

Streaming is what lets an abandoned call stop at the server: vLLM, llama.cpp and the
cloud APIs abort a streamed request when its client closes it. These tests check, on both
wires, that a streamed reply gives the same text and usage as the server counted, that a
reply cut at its cap is flagged ``truncated``, that a stream without usage gives an
estimate marked as such, and that a cancelled or timed-out call closes its stream before
the reply ends (a test server on 127.0.0.1 sends a long reply slowly and counts what it
wrote before the client went away). Also: the reply cap's name per server, and that no
request carries two consecutive messages of one role.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage

from rlm_engine.clients.anthropic import AnthropicClient
from rlm_engine.clients.base import alternate_roles
from rlm_engine.clients.deadline import RequestTimeoutError
from rlm_engine.clients.openai import OpenAIClient
from rlm_engine.clients.streaming import estimate_tokens, partial_usage
from rlm_engine.scripted import Reply, ScriptedModel, wire
from rlm_engine.scripted.model import Request
from rlm_engine.scripted.server import ScriptedServer
from rlm_integrations.langchain.client import LangChainClient

GUARD = 30.0  # far above every bound under test: reaching it means the call hung
LONG = "The quick brown fox jumps over the lazy dog. " * 40  # 1,800 characters


def _client(kind: str, server: ScriptedServer, **kw: Any) -> OpenAIClient | AnthropicClient:
    if kind == "openai":
        return OpenAIClient("scripted-root", server.base_url, "sk-test", **kw)
    return AnthropicClient("scripted-root", server.url, "sk-ant-test", **kw)


def _recording(model: ScriptedModel) -> list[dict[str, Any]]:
    """The raw request bodies the scripted server receives (a rule that never matches)."""
    bodies: list[dict[str, Any]] = []

    def record(req: Request) -> bool:
        bodies.append(req.raw)
        return False

    model.add_rule(record, "never used")
    return bodies


# ------------------------------------------------------------------ streamed = the whole reply


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("sync", [False, True])
def test_a_streamed_reply_has_the_text_and_usage_the_server_counted(
    scripted_server: ScriptedServer, kind: str, sync: bool
) -> None:
    scripted_server.model.add_rule("fox", LONG)
    client = _client(kind, scripted_server)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "fox?"}]
    res = client.complete(msgs) if sync else asyncio.run(client.acomplete(msgs))
    rec = scripted_server.stats.log[-1]
    assert rec.stream, "the request was not streamed"
    assert res.text == LONG
    assert (res.input_tokens, res.output_tokens) == (rec.prompt_tokens, rec.completion_tokens)
    assert not res.truncated and not res.usage_estimated


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("sync", [False, True])
def test_a_reply_cut_at_its_cap_is_truncated(
    scripted_server: ScriptedServer, kind: str, sync: bool
) -> None:
    scripted_server.model.add_rule("fox", LONG)
    client = _client(kind, scripted_server, max_tokens=10)
    msgs = [{"role": "user", "content": "fox?"}]
    res = client.complete(msgs) if sync else asyncio.run(client.acomplete(msgs))
    assert res.truncated
    assert res.text == LONG[:40] and res.output_tokens == 10
    assert scripted_server.stats.log[-1].completion_tokens == 10


class _NoStreamOptions(httpx2.AsyncBaseTransport):
    """Forwards to the real server without ``stream_options``: a server that ignores it."""

    def __init__(self) -> None:
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        body.pop("stream_options", None)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        stripped = httpx2.Request(
            request.method, request.url, headers=headers, content=json.dumps(body).encode()
        )
        stripped.extensions = request.extensions
        return await self._inner.handle_async_request(stripped)

    async def aclose(self) -> None:
        await self._inner.aclose()


def test_a_stream_without_usage_gives_an_estimate_marked_so(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.model.add_rule("fox", LONG)
    http = httpx2.AsyncClient(transport=_NoStreamOptions())
    client = OpenAIClient("scripted-root", scripted_server.base_url, "k", http_client=http)
    msgs = [{"role": "user", "content": "fox?"}]
    res = asyncio.run(client.acomplete(msgs))
    assert res.text == LONG
    assert res.usage_estimated
    assert (res.input_tokens, res.output_tokens) == (estimate_tokens(4), estimate_tokens(len(LONG)))


# ------------------------------------------------------------------ abandoned calls close the stream


class SlowStream:
    """A server on 127.0.0.1 that streams a long reply in the wire's own events, one every
    ``interval`` seconds, and notes how many it wrote before the client went away."""

    def __init__(self, api: str, *, interval: float = 0.05) -> None:
        self.api = api
        self.interval = interval
        self.bodies: list[dict[str, Any]] = []
        self.total = 0  # events the whole reply has
        self.sent = 0  # events written before the client closed the connection
        self.disconnected = threading.Event()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _events(self, body: dict[str, Any]) -> list[bytes]:
        reply = Reply(text=LONG * 4)
        usage = (100, len(reply.text) // 4)
        if self.api == "anthropic":
            req = wire.parse_anthropic(body)
            return [
                f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                for name, data in wire.anthropic_stream(req, reply, usage)
            ]
        req = wire.parse_openai(body)
        return [f"data: {d}\n\n".encode() for d in wire.openai_stream(req, reply, usage)]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            body = json.loads(await reader.readexactly(length))
            self.bodies.append(body)
            events = self._events(body)
            self.total = len(events)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            for event in events:
                if reader.at_eof():  # the client closed its side: stop generating
                    break
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
                self.sent += 1
                await asyncio.sleep(self.interval)
            else:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                return
        self.disconnected.set()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            async with server:
                await asyncio.sleep(GUARD)

        with contextlib.suppress(asyncio.CancelledError, RuntimeError):
            self._loop.run_until_complete(main())

    def __enter__(self) -> SlowStream:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        for task in asyncio.all_tasks(self._loop):
            self._loop.call_soon_threadsafe(task.cancel)
        self._thread.join(10)

    def client(self) -> OpenAIClient | AnthropicClient:
        url = f"http://127.0.0.1:{self.port}"
        if self.api == "openai":
            return OpenAIClient("m", url + "/v1", "k", max_retries=0)
        return AnthropicClient("m", url, "k", max_retries=0)


def _assert_closed_early(server: SlowStream) -> None:
    assert server.bodies and server.bodies[0]["stream"] is True, "the request was not streamed"
    assert server.disconnected.wait(5), "the server never saw the client go away"
    assert 0 < server.sent < server.total, (server.sent, server.total)


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_a_timed_out_call_closes_its_stream_and_carries_its_usage(api: str) -> None:
    with SlowStream(api) as server:
        client = server.client()
        msgs = [{"role": "user", "content": "x" * 400}]
        with pytest.raises(RequestTimeoutError) as info:
            asyncio.run(asyncio.wait_for(client.acomplete(msgs, timeout=0.5), GUARD))
        _assert_closed_early(server)
    usage = partial_usage(info.value)
    assert usage is not None and usage.usage_estimated
    assert usage.text and LONG.startswith(usage.text[:100])
    assert usage.output_tokens >= estimate_tokens(len(usage.text))
    # OpenAI's stream reports usage only at its end: the prompt is estimated; Anthropic's
    # message_start reported the real input tokens.
    assert usage.input_tokens == (estimate_tokens(400) if api == "openai" else 100)


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_a_cancelled_call_closes_its_stream(api: str) -> None:
    caught: list[BaseException] = []

    async def call(client: OpenAIClient | AnthropicClient) -> None:
        try:
            await client.acomplete([{"role": "user", "content": "go"}], timeout=None)
        except asyncio.CancelledError as e:  # what a budget stop or the run's timeout does
            caught.append(e)
            raise

    async def cancel_midway(client: OpenAIClient | AnthropicClient) -> None:
        task = asyncio.create_task(call(client))
        await asyncio.sleep(0.5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with SlowStream(api) as server:
        asyncio.run(asyncio.wait_for(cancel_midway(server.client()), GUARD))
        _assert_closed_early(server)
    usage = partial_usage(caught[0])
    assert usage is not None and usage.usage_estimated and usage.output_tokens > 0


# ------------------------------------------------------------------ the reply cap's name


def _openai_sse(body: dict[str, Any]) -> bytes:
    req = wire.parse_openai(body)
    events = wire.openai_stream(req, Reply(text="ok"), (5, 1))
    return b"".join(f"data: {d}\n\n".encode() for d in events)


def test_openai_itself_gets_max_completion_tokens() -> None:
    """OpenAI's reasoning models refuse ``max_tokens``. api.openai.com is mocked here with
    an httpx MockTransport (no request leaves the machine); it records the body sent."""
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        bodies.append(body)
        headers = {"content-type": "text/event-stream"}
        return httpx2.Response(200, headers=headers, content=_openai_sse(body))

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    client = OpenAIClient("gpt-5-mini", None, "sk-test", max_tokens=256, http_client=http)
    assert client.url.startswith("https://api.openai.com")
    res = asyncio.run(client.acomplete([{"role": "user", "content": "hi"}]))
    assert res.text == "ok" and res.input_tokens == 5
    assert bodies[0]["max_completion_tokens"] == 256 and "max_tokens" not in bodies[0]
    assert bodies[0]["stream"] is True and bodies[0]["stream_options"] == {"include_usage": True}


def test_compatible_servers_get_max_tokens_unless_told_otherwise(
    scripted_server: ScriptedServer,
) -> None:
    bodies = _recording(scripted_server.model)
    msgs = [{"role": "user", "content": "hi"}]
    asyncio.run(_client("openai", scripted_server, max_tokens=64).acomplete(msgs))
    assert bodies[-1]["max_tokens"] == 64 and "max_completion_tokens" not in bodies[-1]
    explicit = _client("openai", scripted_server, max_tokens=64, max_completion_tokens=32)
    explicit.complete(msgs)
    assert bodies[-1]["max_completion_tokens"] == 32 and "max_tokens" not in bodies[-1]
    asyncio.run(_client("openai", scripted_server).acomplete(msgs))  # no cap: none sent
    assert not {"max_tokens", "max_completion_tokens"} & set(bodies[-1])


# ------------------------------------------------------------------ roles alternate


USER_USER = [
    {"role": "system", "content": "S"},
    {"role": "user", "content": "feedback"},
    {"role": "user", "content": "give your best final answer"},
]


def test_alternate_roles_merges_runs_of_one_role_and_keeps_tool_turns() -> None:
    merged = alternate_roles([*USER_USER, {"role": "assistant", "content": "A"}])
    assert merged == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "feedback\n\ngive your best final answer"},
        {"role": "assistant", "content": "A"},
    ]
    tools = [{"role": "tool", "tool_call_id": "1", "content": "a"}] * 2
    assert alternate_roles(tools) == tools
    parts = alternate_roles(
        [
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
        ]
    )
    assert parts == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


def test_the_openai_client_never_sends_two_user_messages_in_a_row(
    scripted_server: ScriptedServer,
) -> None:
    bodies = _recording(scripted_server.model)
    client = _client("openai", scripted_server)
    asyncio.run(client.acomplete(list(USER_USER)))
    client.complete(list(USER_USER))
    for body in bodies:
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert body["messages"][1]["content"] == "feedback\n\ngive your best final answer"


class _Recording(GenericFakeChatModel):
    """A chat model that keeps the messages it was sent."""

    seen: list[list[BaseMessage]] = []

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def _replies(*messages: AIMessage) -> Iterator[AIMessage]:
    return iter(messages)


def test_the_langchain_client_merges_roles_and_reads_truncation() -> None:
    cut_openai = AIMessage(content="par", response_metadata={"finish_reason": "length"})
    cut_anthropic = AIMessage(content="tia", response_metadata={"stop_reason": "max_tokens"})
    whole = AIMessage(content="done", response_metadata={"finish_reason": "stop"})
    model = _Recording(messages=_replies(cut_openai, cut_anthropic, whole))
    model.seen = []
    client = LangChainClient(model)
    results = [asyncio.run(client.acomplete(list(USER_USER))) for _ in range(3)]
    assert [r.truncated for r in results] == [True, True, False]
    for sent in model.seen:
        assert [m.type for m in sent] == ["system", "human"]
        assert sent[1].content == "feedback\n\ngive your best final answer"


def test_a_server_that_refuses_stream_options_is_asked_again_without() -> None:
    """Older Azure API versions and some proxies answer ``stream_options`` with a 400. The
    server is an httpx MockTransport (no request leaves the machine) refusing it."""
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if "stream_options" in body:
            error = {"error": {"message": "Unrecognized request argument: stream_options"}}
            return httpx2.Response(400, json=error)
        headers = {"content-type": "text/event-stream"}
        return httpx2.Response(200, headers=headers, content=_openai_sse(body))

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    client = OpenAIClient("m", "http://proxy.invalid/v1", "k", http_client=http, max_retries=0)
    msgs = [{"role": "user", "content": "hi there"}]
    first = asyncio.run(client.acomplete(msgs))
    second = asyncio.run(client.acomplete(msgs))
    assert first.text == second.text == "ok"
    assert first.usage_estimated and first.input_tokens == estimate_tokens(8)
    assert ["stream_options" in b for b in bodies] == [True, False, False]  # asked once


def test_the_engine_counts_what_a_failed_sub_call_cost() -> None:
    """A sub-call that fails after the server worked on it (here: the client gives up on a
    slow stream) is still in the run's usage, as the client's estimate."""
    from rlm_engine import RLM
    from rlm_engine.clients.base import LMClient
    from rlm_engine.clients.streaming import attach_partial_usage
    from rlm_engine.types import LMResponse

    class Failing(LMClient):
        model_name = "sub-model"

        async def acomplete(self, messages, *, model=None, timeout=None):  # type: ignore[no-untyped-def]
            error = TimeoutError("gave up")
            spent = LMResponse(
                text="", model="sub-model", input_tokens=40, output_tokens=7, usage_estimated=True
            )
            attach_partial_usage(error, spent)
            raise error

    from rlm_engine.clients.scripted import ScriptedClient
    from rlm_engine.scripted import ScriptedModel

    model = ScriptedModel()
    model.add_rule(lambda r: r.is_rlm_root, ["```repl\nx = llm_query('hi')\n```", "FINAL(done)"])
    res = RLM(
        backend=ScriptedClient(model=model), sub_backend=Failing(), environment="local"
    ).completion("c", "q?")
    assert res.status == "final"
    sub = res.usage.by_model()["sub-model"]
    assert (sub.calls, sub.input_tokens, sub.output_tokens) == (1, 40, 7)
