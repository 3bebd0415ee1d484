"""The scripted model and its HTTP server, exercised through the real openai/anthropic SDKs."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from rlm_engine.prompts import (
    FINAL_ANSWER_REQUEST,
    build_system_prompt,
    describe_context,
    first_user_message,
    repl_feedback,
)
from rlm_engine.scripted import Fault, Reply, Request, ScriptedModel, ScriptedServer
from rlm_engine.scripted.reader import (
    NOT_FOUND,
    aggregate_prompt,
    answer_prompt,
    chunk_prompt,
    extract_question,
)

FILLER = "The committee met on a rainy Tuesday and discussed the annual budget at length. "


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        yield s


@pytest.fixture
def oai(server: ScriptedServer) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test-secret")
    yield client
    client.close()


@pytest.fixture
def claude(server: ScriptedServer) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(base_url=server.url, api_key="sk-ant-secret")
    yield client
    client.close()


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def expected_usage(messages: list[dict[str, Any]], reply_text: str) -> tuple[int, int]:
    """The documented token formula, computed independently of the model code."""
    chars = sum(len(m["content"]) for m in messages)
    return max(1, chars // 4), max(1, len(reply_text) // 4)


def haystack(n_chars: int) -> str:
    return (FILLER * (n_chars // len(FILLER) + 1))[:n_chars]


def root_messages(context: Any, query: str | None) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": build_system_prompt(can_recurse=True)},
        {"role": "user", "content": first_user_message(describe_context(context), query)},
    ]


def repl_code(text: str) -> list[str]:
    return re.findall(r"```repl\n(.*?)```", text, re.S)


def run_cells(reply_text: str, namespace: dict[str, Any]) -> str:
    """Run the reply's repl blocks like a minimal REPL; errors become a traceback line."""
    buf = io.StringIO()
    for code in repl_code(reply_text):
        try:
            with contextlib.redirect_stdout(buf):
                exec(code, namespace)
        except Exception as e:
            buf.write(f"Traceback (most recent call last):\n{type(e).__name__}: {e}\n")
    return buf.getvalue()


# --- OpenAI SDK ------------------------------------------------------------------------


def test_openai_sync_completion_reports_documented_usage(server, oai):
    messages = [{"role": "system", "content": "Be brief."}, *user("What is 2+3?")]
    resp = oai.chat.completions.create(model="scripted-sub", messages=messages)
    assert resp.choices[0].message.content == "5"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == "scripted-sub"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == expected_usage(messages, "5")
    (rec,) = server.stats.completions()
    assert (rec.prompt_tokens, rec.completion_tokens) == expected_usage(messages, "5")
    assert rec.api == "openai" and rec.path == "/v1/chat/completions"
    assert rec.last_user == "What is 2+3?"


def test_openai_sync_stream_includes_usage(server, oai):
    messages = user("Tell me something about the scripted server and its streaming support")
    plain = oai.chat.completions.create(model="scripted-sub", messages=messages)
    stream = oai.chat.completions.create(
        model="scripted-sub",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert len([p for p in pieces if p]) > 1  # really streamed in several deltas
    assert "".join(pieces) == plain.choices[0].message.content
    assert finish == "stop"
    assert usage is not None and usage.prompt_tokens == plain.usage.prompt_tokens
    assert usage.completion_tokens == plain.usage.completion_tokens


async def test_openai_async_non_stream_and_stream(server):
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k") as client:
        resp = await client.chat.completions.create(
            model="scripted-root", messages=user("What is 6 * 7?")
        )
        assert resp.choices[0].message.content == "42"
        stream = await client.chat.completions.create(
            model="scripted-root",
            messages=user("What is (10 - 4) / 4?"),
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            usage = chunk.usage or usage
    assert text == "1.5"
    assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert server.stats.by_model == {"scripted-root": 2}


def test_models_endpoint_lists_configured_names(server, oai):
    assert [m.id for m in oai.models.list().data] == ["scripted-root", "scripted-sub"]
    server.models = ["alpha", "beta", "gamma"]
    assert [m.id for m in oai.models.list().data] == ["alpha", "beta", "gamma"]
    assert server.stats.by_path["/v1/models"] == 2


def test_tool_calls_round_trip(server, oai):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    server.model.add_rule(
        lambda r: bool(r.tools) and r.messages[-1]["role"] == "user",
        Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_w"}]),
    )
    server.model.add_rule(
        lambda r: r.messages[-1]["role"] == "tool",
        lambda r: f"It is {r.messages[-1]['content']} in Paris.",
    )
    messages: list[dict[str, Any]] = user("Weather in Paris?")
    first = oai.chat.completions.create(model="scripted-sub", messages=messages, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name) == ("call_w", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    second = oai.chat.completions.create(model="scripted-sub", messages=messages, tools=tools)
    assert second.choices[0].message.content == "It is sunny in Paris."


def test_streamed_tool_call_accumulates(server, oai):
    args = {"city": "Reykjavik", "units": "metric", "days": 3}
    server.model.add_rule(".*", Reply(tool_calls=[{"name": "forecast", "arguments": args}]))
    stream = oai.chat.completions.create(
        model="scripted-sub", messages=user("forecast?"), stream=True
    )
    name, arg_text, finish = "", "", None
    for chunk in stream:
        for tc in chunk.choices[0].delta.tool_calls or []:
            name += tc.function.name or ""
            arg_text += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert (name, json.loads(arg_text), finish) == ("forecast", args, "tool_calls")


def test_forced_tool_choice_gets_schema_valid_arguments(oai):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
        "required": ["answer", "confidence"],
    }
    resp = oai.chat.completions.create(
        model="scripted-sub",
        messages=user("What is 20 + 22?"),
        tools=[{"type": "function", "function": {"name": "Answer", "parameters": schema}}],
        tool_choice={"type": "function", "function": {"name": "Answer"}},
    )
    call = resp.choices[0].message.tool_calls[0]
    assert call.function.name == "Answer"
    assert json.loads(call.function.arguments) == {"answer": "42", "confidence": 42.0}


def test_json_schema_response_format(oai):
    resp = oai.chat.completions.create(
        model="scripted-sub",
        messages=user("What is 3*3?"),
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "out",
                "schema": {
                    "type": "object",
                    "properties": {"value": {"type": "integer"}, "ok": {"type": "boolean"}},
                },
            },
        },
    )
    assert json.loads(resp.choices[0].message.content) == {"value": 9, "ok": False}


def test_max_tokens_and_stop_cut_the_text(server, oai):
    server.model.add_rule("long", "word " * 100)
    resp = oai.chat.completions.create(
        model="scripted-sub", messages=user("long please"), max_tokens=5
    )
    assert resp.choices[0].finish_reason == "length"
    assert resp.choices[0].message.content == ("word " * 100)[:20]
    assert resp.usage.completion_tokens == 5
    server.model.add_rule("halt", "alpha beta STOP gamma")
    resp = oai.chat.completions.create(model="scripted-sub", messages=user("halt"), stop=["STOP"])
    assert resp.choices[0].message.content == "alpha beta "


# --- Anthropic SDK ---------------------------------------------------------------------


def test_anthropic_sync_message(server, claude):
    msg = claude.messages.create(
        model="scripted-sub",
        max_tokens=64,
        system="You are terse.",
        messages=[{"role": "user", "content": [{"type": "text", "text": "What is 7*6?"}]}],
    )
    assert msg.content[0].type == "text" and msg.content[0].text == "42"
    assert msg.stop_reason == "end_turn"
    expected = expected_usage([{"content": "You are terse."}, {"content": "What is 7*6?"}], "42")
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == expected
    (rec,) = server.stats.completions()
    assert rec.api == "anthropic" and rec.path == "/v1/messages"
    assert (rec.prompt_tokens, rec.completion_tokens) == expected


def test_anthropic_stream_events(server, claude):
    server.model.add_rule("story", "Once upon a time a scripted model streamed a long reply.")
    with claude.messages.stream(
        model="scripted-root", max_tokens=256, messages=user("tell a story")
    ) as stream:
        kinds = []
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_message()
    assert final.content[0].text == "Once upon a time a scripted model streamed a long reply."
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.count("text") > 1 and "message_delta" in kinds
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == len(final.content[0].text) // 4


def test_anthropic_tool_use_round_trip(server, claude):
    server.model.add_rule(
        lambda r: r.messages[-1]["role"] == "user",
        Reply(tool_calls=[{"name": "lookup", "arguments": {"q": "acme"}}]),
    )
    server.model.add_rule(
        lambda r: r.messages[-1]["role"] == "tool",
        lambda r: f"Found: {r.messages[-1]['content']}",
    )
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    first = claude.messages.create(
        model="scripted-sub", max_tokens=100, tools=tools, messages=user("find acme")
    )
    (block,) = first.content
    assert first.stop_reason == "tool_use"
    assert (block.type, block.name, block.input) == ("tool_use", "lookup", {"q": "acme"})
    second = claude.messages.create(
        model="scripted-sub",
        max_tokens=100,
        tools=tools,
        messages=[
            *user("find acme"),
            {"role": "assistant", "content": [block.model_dump()]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": block.id, "content": "ACME Inc"}
                ],
            },
        ],
    )
    assert second.content[0].text == "Found: ACME Inc"


# --- faults ----------------------------------------------------------------------------


def test_429_is_retried_by_the_sdk(server, oai):
    server.inject(Fault(status=429, times=2, retry_after=0.01))
    resp = oai.chat.completions.create(model="scripted-sub", messages=user("What is 1+1?"))
    assert resp.choices[0].message.content == "2"
    assert [r.status for r in server.stats.log] == [429, 429, 200]
    assert server.stats.log[0].fault == "status_429"
    assert server.pending_faults == []


def test_429_without_retries_surfaces_rate_limit_error(server, oai):
    server.inject(Fault(status=429, retry_after=0.01, message="slow down"))
    with pytest.raises(openai.RateLimitError, match="slow down") as info:
        oai.with_options(max_retries=0).chat.completions.create(
            model="scripted-sub", messages=user("hi")
        )
    assert info.value.status_code == 429
    assert oai.chat.completions.create(model="scripted-sub", messages=user("What is 2*2?"))


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_retry_then_surface(server, oai, status):
    server.inject(Fault(status=status, times=1, retry_after=0.01))
    assert oai.chat.completions.create(model="scripted-sub", messages=user("hi")).choices
    server.inject(Fault(status=status, times=1))
    with pytest.raises(openai.InternalServerError) as info:
        oai.with_options(max_retries=0).chat.completions.create(
            model="scripted-sub", messages=user("hi")
        )
    assert info.value.status_code == status
    assert [r.status for r in server.stats.log] == [status, 200, status]


def test_anthropic_overloaded_is_retried(server, claude):
    server.inject(Fault(status=529, retry_after=0.01))
    msg = claude.messages.create(model="scripted-sub", max_tokens=10, messages=user("What is 9-4?"))
    assert msg.content[0].text == "5"
    server.inject(Fault(status=529))
    with pytest.raises(anthropic.APIStatusError) as info:
        claude.with_options(max_retries=0).messages.create(
            model="scripted-sub", max_tokens=10, messages=user("hi")
        )
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"


def test_dropped_connection(server, oai):
    server.inject(Fault(drop_connection=True))
    with pytest.raises(openai.APIConnectionError):
        oai.with_options(max_retries=0).chat.completions.create(
            model="scripted-sub", messages=user("hi")
        )
    server.inject(Fault(drop_connection=True))
    assert oai.chat.completions.create(model="scripted-sub", messages=user("What is 3+3?"))
    assert [r.fault for r in server.stats.log] == ["drop_connection", "drop_connection", None]


def test_malformed_body(server, oai):
    server.inject(Fault(malformed=True))
    with pytest.raises((ValueError, openai.APIError)):
        oai.with_options(max_retries=0).chat.completions.create(
            model="scripted-sub", messages=user("hi")
        )
    assert server.stats.log[0].status == 200 and server.stats.log[0].fault == "malformed"
    assert server.stats.completions() == []


def test_delay_fault_answers_normally(server, oai):
    server.inject(Fault(delay=0.05))
    resp = oai.chat.completions.create(model="scripted-sub", messages=user("What is 5+5?"))
    assert resp.choices[0].message.content == "10"
    assert server.stats.log[0].fault == "delay" and server.stats.log[0].status == 200


def test_hang_times_out_and_stop_releases_it():
    server = ScriptedServer().start()
    try:
        server.inject(Fault(hang=True))
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=0.3)
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="scripted-sub", messages=user("hi"))
        client.close()
        assert server.stats.log == []  # the handler is still hanging
    finally:
        server.stop()
    deadline = time.monotonic() + 10  # hang_seconds is 600: only stop() can end it
    while not server.stats.log and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [r.fault for r in server.stats.log] == ["hang"]
    assert not server.running


def test_fault_matching_by_model_and_callable(server, oai):
    server.inject(Fault(status=400, match="scripted-sub", times=None))
    server.inject(Fault(status=404, match=lambda r: "secret" in r.last_user))
    ok = oai.chat.completions.create(model="scripted-root", messages=user("What is 1+2?"))
    assert ok.choices[0].message.content == "3"
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="scripted-root", messages=user("a secret"))
    for _ in range(3):
        with pytest.raises(openai.BadRequestError):
            oai.chat.completions.create(model="scripted-sub", messages=user("hi"))
    server.clear_faults()
    assert oai.chat.completions.create(model="scripted-sub", messages=user("What is 2+2?"))


def test_invalid_faults_are_rejected():
    with pytest.raises(ValueError, match="needs status"):
        Fault()
    with pytest.raises(ValueError, match="400-599"):
        Fault(status=200)


# --- concurrency, latency, metrics -----------------------------------------------------


async def test_concurrent_requests_are_served_in_parallel(server):
    server.set_latency(0.2)
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k") as client:
        replies = await asyncio.gather(
            *[
                client.chat.completions.create(
                    model="scripted-sub", messages=user(f"What is {i}+1?")
                )
                for i in range(20)
            ]
        )
    assert [r.choices[0].message.content for r in replies] == [str(i + 1) for i in range(20)]
    assert server.stats.max_in_flight >= 16
    assert server.stats.requests == 20
    assert server.stats.in_flight == 0


async def test_per_model_latency_applies_only_to_that_model(server):
    server.set_latency(0.3, model="scripted-sub")
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k") as client:
        await asyncio.gather(
            *[
                client.chat.completions.create(model=m, messages=user("hi"))
                for m in ["scripted-sub"] * 4 + ["scripted-root"] * 4
            ]
        )
    assert server.latency_for("scripted-sub") == 0.3
    assert server.latency_for("scripted-root") == 0.0
    peaks = server.stats.max_in_flight_by_model
    assert peaks["scripted-sub"] == 4  # the slow ones overlapped
    assert server.stats.by_model == {"scripted-sub": 4, "scripted-root": 4}


def test_reset_stats(server, oai):
    oai.chat.completions.create(model="scripted-sub", messages=user("hi"))
    assert server.stats.requests == 1
    server.reset_stats()
    assert (server.stats.requests, server.stats.log, server.stats.max_in_flight) == (0, [], 0)


def test_keep_alive_reuses_one_connection_and_stop_closes_it():
    server = ScriptedServer().start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    body = json.dumps({"model": "scripted-sub", "messages": user("What is 4+4?")})
    for _ in range(3):
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert json.loads(resp.read())["choices"][0]["message"]["content"] == "8"
        assert resp.getheader("Connection") != "close"
    sock = conn.sock
    assert sock is not None
    server.stop()
    assert sock.recv(1) == b""  # the server closed the idle keep-alive connection
    conn.close()


# --- validation ------------------------------------------------------------------------


def raw_post(server: ScriptedServer, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_garbage_requests_get_json_400(server):
    status, body = raw_post(server, "/v1/chat/completions", b"{not json")
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    status, body = raw_post(server, "/v1/chat/completions", b'{"model": "m", "messages": []}')
    assert status == 400 and body["error"]["param"] == "messages"
    payload = {"model": "m", "messages": user("x"), "n": 2}
    status, body = raw_post(server, "/v1/chat/completions", json.dumps(payload).encode())
    assert status == 400 and "n=1" in body["error"]["message"]
    status, body = raw_post(
        server, "/v1/messages", json.dumps({"model": "m", "messages": user("x")}).encode()
    )
    assert status == 400 and body["type"] == "error"
    assert "max_tokens" in body["error"]["message"]
    status, body = raw_post(server, "/v1/nothing", b"{}")
    assert status == 404
    assert server.stats.completions() == []


def test_sdk_sees_bad_request_error(oai):
    with pytest.raises(openai.BadRequestError, match="role"):
        oai.chat.completions.create(model="m", messages=[{"role": "wizard", "content": "x"}])


def test_auth_header_is_never_logged(server, oai, capsys):
    server.verbose = True
    oai.chat.completions.create(model="scripted-sub", messages=user("hi"))
    err = capsys.readouterr().err
    assert "POST /v1/chat/completions 200" in err
    assert "sk-test-secret" not in err and "Authorization" not in err


def test_cli_serves_until_interrupted():
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlm_engine.scripted.server", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        assert m, line
        client = openai.OpenAI(base_url=m.group(0), api_key="k")
        assert [x.id for x in client.models.list().data] == ["scripted-root", "scripted-sub"]
        client.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


# --- rules and skills ------------------------------------------------------------------


def test_rules_regex_list_times_and_order():
    model = ScriptedModel()
    model.add_rule(r"^ping", ["pong-1", "pong-2"], name="pings")
    model.add_rule(r"^ping", "pong-late", times=1)
    model.add_rule({"model": "special", "turn": 0}, "special model")
    answers = [model.respond(Request(messages=user("ping"))).text for _ in range(4)]
    assert answers[:3] == ["pong-1", "pong-2", "pong-late"]
    assert answers[3] == "Scripted answer: ping"  # all rules used up: the built-in policy
    assert model.respond(Request(messages=user("x"), model="special")).text == "special model"
    assert model.rule_hits()["pings"] == 2
    model.clear_rules()
    assert model.respond(Request(messages=user("x"), model="special")).text.startswith("Scripted")


def test_callable_rules_see_the_request(server, claude):
    server.model.add_rule(
        lambda r: r.api == "anthropic", lambda r: f"{r.model}:{r.system}:{r.turn}", times=1
    )
    msg = claude.messages.create(
        model="claude-x",
        max_tokens=50,
        system=[{"type": "text", "text": "sys text"}],
        messages=[*user("a"), {"role": "assistant", "content": "b"}, *user("c")],
    )
    assert msg.content[0].text == "claude-x:sys text:1"


def test_skills_run_after_rules_and_before_policies():
    model = ScriptedModel()
    seen: list[str] = []

    def shout(req: Request) -> Reply | None:
        seen.append(req.last_user)
        return Reply(text=req.last_user.upper()) if req.last_user.startswith("shout") else None

    model.add_skill(shout)
    model.add_rule("ruled", "from rule")
    assert model.respond(Request(messages=user("shout hi"))).text == "SHOUT HI"
    assert model.respond(Request(messages=user("ruled shout"))).text == "from rule"
    assert model.respond(Request(messages=user("What is 1+1?"))).text == "2"  # fell through
    assert seen == ["shout hi", "What is 1+1?"]


DSPY_REQUEST = [
    {
        "role": "system",
        "content": "Your input fields are:\n1. `question` (str):\nYour output fields are:\n"
        "1. `answer` (str):\nAll interactions will be structured in the following way",
    },
    {"role": "user", "content": "[[ ## question ## ]]\nWhy?"},
]


def test_new_models_have_the_standard_skills_after_added_ones_and_bare_models_none():
    from rlm_engine.scripted.skills import dspy as dspy_skills
    from rlm_engine.scripted.skills import langchain as lc_skills
    from rlm_engine.scripted.skills import standard_skills

    model = ScriptedModel()
    assert model.skills == standard_skills() and len(model.skills) == 5  # + rlm eval reader, direct sim
    assert lc_skills.install(dspy_skills.install(model)).skills == standard_skills()  # no twice
    assert "[[ ## answer ## ]]" in model.respond(Request(messages=DSPY_REQUEST)).text
    model.add_skill(lambda req: Reply(text="mine") if "Why?" in req.last_user else None)
    assert model.respond(Request(messages=DSPY_REQUEST)).text == "mine"  # added skills first

    bare = ScriptedModel.bare()
    assert bare.skills == [] and ScriptedModel(skills=False).skills == []
    assert bare.respond(Request(messages=DSPY_REQUEST)).text.startswith("Scripted answer")
    assert dspy_skills.install(bare).skills == [dspy_skills.dspy_skill]
    assert "[[ ## answer ## ]]" in bare.respond(Request(messages=DSPY_REQUEST)).text

    model.remove_skill(dspy_skills.dspy_skill)  # a standard skill can be removed too
    assert not model.has_skill(dspy_skills.dspy_skill)
    with pytest.raises(ValueError):
        model.remove_skill(dspy_skills.dspy_skill)


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("What is the secret code?", "What is the secret code?"),
        ("You are terse. Reply with the value only.\nWhat is X?", "What is X?"),
        (
            "Instructions: be brief.\n\nFor my report. Who founded Acme? Thanks!",
            "Who founded Acme?",
        ),
        ("Read the log and answer: how many lines contain ERROR?", "how many lines contain ERROR?"),
        ("Question: who founded Acme", "who founded Acme"),
        ("Answer in one word. Find the secret code", "Find the secret code"),
        ("Be brief.\nhello there", "hello there"),
        (" \n", None),
    ],
)
def test_extract_question_finds_the_question_among_instructions(text, question):
    assert extract_question(text) == question


def test_reader_computes_arithmetic_asked_after_instructions():
    assert answer_prompt("You are a calculator. Reply with the number.\nWhat is 6 * 7?") == "42"


def test_root_reads_the_question_after_instructions_in_the_query():
    query = "Instructions: You are a careful analyst. Reply briefly.\n\nWhat is the secret code?"
    reply = ScriptedModel().respond(Request(messages=root_messages(haystack(1_000), query)))
    assert "question = 'What is the secret code?'" in reply.text
    inside = "Instructions: be brief.\n\nThe task is stated inside the context; find it."
    reply = ScriptedModel().respond(Request(messages=root_messages(haystack(1_000), inside)))
    assert "# step: inspect" in reply.text


def test_rule_latency_is_applied_by_the_server(server, oai):
    server.model.add_rule("slow", "done", latency=0.05)
    assert oai.chat.completions.create(model="m", messages=user("slow")).choices[0].message.content
    assert server.stats.log[0].status == 200


def test_content_parts_are_normalized_to_text():
    req = Request(
        messages=[
            {"role": "system", "content": [{"type": "text", "text": "S"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hello"},
                    {"type": "image_url", "image_url": {"url": "data:"}},
                    {"type": "text", "text": "world"},
                ],
            },
        ]
    )
    assert (req.system, req.last_user, req.turn, req.is_rlm_root) == ("S", "hello\nworld", 0, False)


# --- the sub-model policy --------------------------------------------------------------


def test_sub_policy_finds_needle_in_50kb_chunk():
    text = haystack(25_000) + " The secret code is 4821-XK. " + haystack(25_000)
    assert len(text) > 50_000
    assert answer_prompt(chunk_prompt("What is the secret code?", text)) == "4821-XK"
    assert answer_prompt(chunk_prompt("What is the secret code?", haystack(50_000))) == NOT_FOUND


def test_sub_policy_other_needle_shapes():
    text = (
        haystack(3000) + "\nThe magic number for Paris is 7341.\nThe magic number for Rome is 12.\n"
    )
    assert answer_prompt(chunk_prompt("What is the magic number for Paris?", text)) == "7341"
    assert answer_prompt(chunk_prompt("What is the magic number for Rome?", text)) == "12"
    text2 = (
        haystack(2000) + " Marie Curie was the founder of the radium institute. " + haystack(500)
    )
    assert answer_prompt(chunk_prompt("Who was the founder of the radium institute?", text2)) == (
        "Marie Curie"
    )
    text3 = "Question: What is the secret code?\n" + haystack(500) + "\nSecret code: alpha-7\n"
    assert answer_prompt(chunk_prompt("What is the secret code?", text3)) == "alpha-7"


def test_sub_policy_counts():
    text = "apple pie\nbanana split\nApple juice and apple cake\npineapple\n"
    q_word = "How many times does the word 'apple' appear?"
    assert answer_prompt(chunk_prompt(q_word, text)) == "3"  # whole words, any case
    q_lines = "How many lines contain apple?"
    assert answer_prompt(chunk_prompt(q_lines, text)) == "3"  # substring per line
    assert answer_prompt(chunk_prompt(q_word, "no fruit here")) == "0"


def test_aggregate_prompt_sums_counts_and_votes():
    assert (
        answer_prompt(aggregate_prompt("How many times does 'x' appear?", ["3", "4", "0"])) == "7"
    )
    assert answer_prompt(aggregate_prompt("What is the code?", ["b", "a", "A", "b"])) == "b"
    assert answer_prompt(aggregate_prompt("What is the code?", ["first", "second"])) == "first"


def test_unknown_prompts_are_deterministic():
    assert answer_prompt("What is (2 + 3) * 4?") == "20"
    assert answer_prompt("2**10") == "1024"
    assert answer_prompt("What is 1/0?").startswith("Scripted answer: ")
    long = "Summarize this paragraph about scripted servers and deterministic replies, please."
    assert answer_prompt(long) == "Scripted answer: " + long[:60]


def test_usage_for_matches_the_formula():
    req = Request(messages=[{"role": "system", "content": "x" * 10}, *user("y" * 33)])
    reply = Reply(text="z" * 9)
    assert ScriptedModel.usage_for(req, reply) == (10, 2)
    assert ScriptedModel.usage_for(Request(messages=user("")), Reply()) == (1, 1)
    call = Reply(tool_calls=[{"name": "f", "arguments": {"a": 1}}])
    assert ScriptedModel.usage_for(req, call)[1] == max(1, len('{"a": 1}') // 4)


# --- the root (RLM) policy -------------------------------------------------------------


def test_root_turn_1_writes_batched_chunk_code_and_turn_2_final_var(oai):
    context = haystack(120_000)
    messages = root_messages(context, "What is the secret code?")
    first = oai.chat.completions.create(model="scripted-root", messages=messages)
    text1 = first.choices[0].message.content
    (code,) = repl_code(text1)
    assert "llm_query_batched(prompts)" in code
    assert "FINAL" not in text1
    messages += [
        {"role": "assistant", "content": text1},
        {
            "role": "user",
            "content": repl_feedback(["str 120000\nchunks: 3\ncandidates: ['4821']\n"], 0, 5),
        },
    ]
    second = oai.chat.completions.create(model="scripted-root", messages=messages)
    text2 = second.choices[0].message.content
    (agg,) = repl_code(text2)
    assert "final_answer = llm_query(" in agg
    assert re.search(r"^FINAL_VAR\(final_answer\)$", text2, re.M)


def test_root_turn_1_code_runs_and_finds_the_needle():
    context = haystack(130_000) + "\nThe secret code is 9907.\n" + haystack(40_000)
    reply = ScriptedModel().respond(
        Request(messages=root_messages(context, "What is the secret code?"))
    )
    batches: list[int] = []

    def fake_batched(prompts: list[str], model: str | None = None) -> list[str]:
        batches.append(len(prompts))
        assert all(len(p) < 51_000 for p in prompts)
        return [answer_prompt(p) for p in prompts]

    ns: dict[str, Any] = {"context": context, "llm_query_batched": fake_batched}
    out = run_cells(reply.text, ns)
    assert "Traceback" not in out
    assert "candidates: ['9907']" in out
    assert batches == [len(ns["chunks"])] and len(ns["chunks"]) == 4
    assert "".join(ns["chunks"]) == context + "\n"  # line-boundary chunks lose nothing


@pytest.mark.parametrize(
    "context",
    [
        ["doc one about apples", "The secret code is 55.", {"k": "v"}],
        {"a": "nothing here", "b": "The secret code is 55."},
        [{"id": 1, "text": "nothing"}, {"id": 2, "text": "The secret code is 55."}],
    ],
)
def test_root_turn_1_code_normalizes_lists_and_dicts(context):
    reply = ScriptedModel().respond(
        Request(messages=root_messages(context, "What is the secret code?"))
    )
    ns: dict[str, Any] = {
        "context": context,
        "llm_query_batched": lambda ps, model=None: [answer_prompt(p) for p in ps],
    }
    assert "candidates: ['55']" in run_cells(reply.text, ns)


def run_rlm(
    server: ScriptedServer,
    client: openai.OpenAI,
    context: Any,
    query: str | None,
    max_iter: int = 8,
) -> tuple[str | None, tuple[int, int]]:
    """A minimal RLM loop over HTTP: root and sub-calls both go through the SDK."""
    tokens = [0, 0]

    def call(model: str, messages: list[dict[str, Any]]) -> str:
        resp = client.chat.completions.create(model=model, messages=messages)
        tokens[0] += resp.usage.prompt_tokens
        tokens[1] += resp.usage.completion_tokens
        return resp.choices[0].message.content

    ns: dict[str, Any] = {
        "context": context,
        "llm_query": lambda p, model=None: call("scripted-sub", user(p)),
        "llm_query_batched": lambda ps, model=None: [call("scripted-sub", user(p)) for p in ps],
    }
    messages = root_messages(context, query)
    for i in range(max_iter):
        text = call("scripted-root", messages)
        out = run_cells(text, ns)
        final_var = re.search(r"^FINAL_VAR\((\w+)\)$", text, re.M)
        if final_var:
            return str(ns[final_var.group(1)]), (tokens[0], tokens[1])
        final = re.search(r"^FINAL\((.*)\)$", text, re.M)
        if final:
            return final.group(1), (tokens[0], tokens[1])
        messages += [
            {"role": "assistant", "content": text},
            {"role": "user", "content": repl_feedback([out], i, max_iter - i - 1)},
        ]
    return None, (tokens[0], tokens[1])


def test_root_end_to_end_needle_counts_and_tokens(server, oai):
    context = haystack(200_000) + "\nThe secret code is 31337.\n" + haystack(20_000)
    answer, tokens = run_rlm(server, oai, context, "What is the secret code?")
    assert answer == "31337"
    n_chunks = -(-len(context) // 50_000)
    assert len(server.stats.completions("scripted-sub")) == n_chunks + 1  # chunks + aggregate
    assert len(server.stats.completions("scripted-root")) == 2
    assert server.stats.tokens() == tokens  # what the client saw is what the server counted


def test_root_end_to_end_counting_and_absent_answer(server, oai):
    lines = [f"entry {i}: {'error' if i % 7 == 0 else 'ok'} status" for i in range(9000)]
    context = "\n".join(lines)
    answer, _ = run_rlm(server, oai, context, "How many lines contain error?")
    assert answer == str(sum(1 for ln in lines if "error" in ln))
    answer, _ = run_rlm(server, oai, haystack(80_000), "What is the secret code?")
    assert answer == "The context does not contain the answer."


def test_root_finds_the_task_inside_the_context(server, oai):
    context = "Task: What is the magic number for Oslo?\n" + haystack(60_000)
    context += "\nThe magic number for Oslo is 4242.\n"
    answer, _ = run_rlm(server, oai, context, None)
    assert answer == "4242"
    first_root = server.stats.completions("scripted-root")[0]
    assert first_root.completion_tokens > 0
    assert server.stats.by_model["scripted-root"] == 3  # inspect, chunk, aggregate


def test_root_recovers_from_a_repl_error_once():
    model = ScriptedModel()
    messages = root_messages("some text", "What is the secret code?")
    first = model.respond(Request(messages=messages)).text
    error = "Traceback (most recent call last):\nNameError: name 'llm_query_batched' is not defined"
    messages += [
        {"role": "assistant", "content": first},
        {"role": "user", "content": repl_feedback([error], 0, 5)},
    ]
    retry = model.respond(Request(messages=messages)).text
    assert "# step: chunk-simple" in retry and "llm_query(" in retry
    assert "NameError" in retry
    messages += [
        {"role": "assistant", "content": retry},
        {"role": "user", "content": repl_feedback([error], 1, 4)},
    ]
    final = model.respond(Request(messages=messages)).text
    assert re.search(r"^FINAL\(.+\)$", final, re.M) and "```" not in final


def test_root_answers_at_once_when_out_of_iterations():
    model = ScriptedModel()
    messages = root_messages("ctx", "What is the secret code?")
    messages += [
        {"role": "assistant", "content": model.respond(Request(messages=messages)).text},
        {"role": "user", "content": repl_feedback(["chunks: 1\ncandidates: ['77', '77']"], 0, 1)},
        {"role": "assistant", "content": "Let me think more."},
        {"role": "user", "content": FINAL_ANSWER_REQUEST},
    ]
    assert model.respond(Request(messages=messages)).text.endswith("FINAL(77)")


def test_root_never_loops_past_six_turns():
    model = ScriptedModel()
    model.add_rule({"is_rlm_root": True}, "I am confused.", times=6)
    messages = root_messages("ctx", "What is the secret code?")
    for i in range(6):
        text = model.respond(Request(messages=messages)).text
        messages += [
            {"role": "assistant", "content": text},
            {"role": "user", "content": repl_feedback(["(nothing)"], i, 10)},
        ]
    last = model.respond(Request(messages=messages)).text
    assert "FINAL(" in last and "```" not in last


def test_root_retries_when_every_sub_call_failed():
    context = haystack(1_000) + " The secret code is 808. "
    model = ScriptedModel()
    messages = root_messages(context, "What is the secret code?")
    first = model.respond(Request(messages=messages)).text
    ns: dict[str, Any] = {
        "context": context,
        "llm_query_batched": lambda ps, model=None: ["Error: llm_query failed: 503"] * len(ps),
        "llm_query": lambda p, model=None: answer_prompt(p),
    }
    out = run_cells(first, ns)
    assert "failed sub-calls: 1" in out and "candidates: []" in out
    messages += [
        {"role": "assistant", "content": first},
        {"role": "user", "content": repl_feedback([out], 0, 5)},
    ]
    retry = model.respond(Request(messages=messages)).text
    assert "# step: chunk-simple" in retry  # not "the context does not contain the answer"
    assert "candidates: ['808']" in run_cells(retry, ns)


@pytest.mark.parametrize(
    ("question", "candidates", "expected"),
    [
        ("What is the secret code?", ["x", "y", "y"], "y"),
        ("How many lines contain a?", ["2", "5"], "7"),
    ],
)
def test_aggregate_code_combines_itself_when_the_sub_call_fails(question, candidates, expected):
    model = ScriptedModel()
    messages = root_messages("ctx", question)
    first = model.respond(Request(messages=messages)).text
    messages += [
        {"role": "assistant", "content": first},
        {
            "role": "user",
            "content": repl_feedback([f"chunks: 2\ncandidates: {candidates!r}"], 0, 5),
        },
    ]
    agg = model.respond(Request(messages=messages)).text
    ns: dict[str, Any] = {
        "question": question,
        "candidates": candidates,
        "llm_query": lambda p, model=None: "Error: llm_query failed: APITimeoutError",
    }
    run_cells(agg, ns)
    assert ns["final_answer"] == expected


async def test_rule_times_hold_under_concurrency(server):
    server.model.add_rule(".*", "limited", times=5, name="five")
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k") as client:
        replies = await asyncio.gather(
            *[
                client.chat.completions.create(model="scripted-sub", messages=user("What is 1+1?"))
                for _ in range(20)
            ]
        )
    texts = [r.choices[0].message.content for r in replies]
    assert texts.count("limited") == 5 and texts.count("2") == 15
    assert server.model.rule_hits() == {"five": 5}


def test_anthropic_count_tokens(server, claude):
    messages = user("x" * 40)
    counted = claude.messages.count_tokens(model="scripted-sub", messages=messages, system="s" * 8)
    assert counted.input_tokens == 12
    assert server.stats.completions() == []  # counting is not a completion


def test_a_failing_rule_becomes_a_500_the_user_can_read(server, oai, capsys):
    def broken(req: Request) -> str:
        raise KeyError("no such fixture")

    server.model.add_rule("boom", broken)
    with pytest.raises(openai.InternalServerError, match="scripted model failed: KeyError"):
        oai.with_options(max_retries=0).chat.completions.create(model="m", messages=user("boom"))
    assert "KeyError" in capsys.readouterr().err  # the traceback is printed for debugging
