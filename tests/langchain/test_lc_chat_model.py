"""RLMChatModel behaviour against the scripted OpenAI-compatible server."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.load import dumpd, load
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.rate_limiters import BaseRateLimiter
from langchain_core.tools import tool
from pydantic import BaseModel, ValidationError
from typing_extensions import TypedDict

from rlm_engine.clients.configured import make_clients
from rlm_engine.scripted import Fault, Request, ScriptedModel
from rlm_engine.scripted.server import ScriptedServer
from rlm_integrations.langchain import (
    EmptyInputError,
    RLMChatModel,
    RLMError,
    RLMTimeoutError,
    ScriptedChatModel,
)

NEEDLE = "The secret code is 4729."


def needle_doc(n_lines: int = 4000) -> str:
    lines = [
        f"Line {i}: the weather report says nothing of interest today." for i in range(n_lines)
    ]
    lines[n_lines // 2] = NEEDLE
    return "\n".join(lines)


DOC = needle_doc()


@pytest.fixture
def model(scripted_model: ScriptedModel) -> ScriptedModel:
    return scripted_model


@pytest.fixture
def llm(model: ScriptedModel, scripted_server: ScriptedServer) -> RLMChatModel:
    return RLMChatModel(
        model="scripted-root",
        sub_model="scripted-sub",
        base_url=scripted_server.base_url,
        api_key="sk-test",
        max_iterations=8,
    )


def root_turn(n: int) -> Any:
    return lambda req: req.is_rlm_root and req.turn == n


class Spy:
    """A skill that records every request reaching skills and never answers."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def __call__(self, req: Request) -> None:
        self.requests.append(req)


# -- answers, usage, metadata -------------------------------------------------------------
def test_long_document_answer_usage_and_metadata(
    llm: RLMChatModel, scripted_server: ScriptedServer
) -> None:
    msg = llm.invoke([SystemMessage(DOC), HumanMessage("What is the secret code?")])
    assert msg.content == "4729"
    meta = msg.response_metadata
    assert meta["model_name"] == "scripted-root"
    assert meta["model_provider"] == "rlm"
    assert (meta["status"], meta["finish_reason"]) == ("final", "stop")
    assert meta["iterations"] >= 2
    # response_metadata["usage"] holds exactly what the server counted; usage_metadata what
    # no nested run carried: nothing here (every call is a run of its own: test_lc_usage.py).
    log = [r for r in scripted_server.stats.log if r.model]
    total = meta["usage"]["total"]
    assert total["input_tokens"] == sum(r.prompt_tokens for r in log)
    assert total["output_tokens"] == sum(r.completion_tokens for r in log)
    root, sub = meta["usage"]["root"], meta["usage"]["sub"]
    assert root["calls"] == sum(1 for r in log if r.model == "scripted-root")
    assert sub["calls"] == sum(1 for r in log if r.model == "scripted-sub") > 0
    assert root["input_tokens"] + sub["input_tokens"] == total["input_tokens"]
    assert msg.usage_metadata == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}


def test_root_lm_never_sees_the_document(model: ScriptedModel, llm: RLMChatModel) -> None:
    spy = Spy()
    model.add_skill(spy)  # no tools or schema here, so every request reaches it
    assert llm.invoke("What is the secret code?", context=DOC).content == "4729"
    roots = [r for r in spy.requests if r.is_rlm_root]
    subs = [r for r in spy.requests if not r.is_rlm_root]
    assert roots and subs
    assert not any(NEEDLE in m["content"] for r in roots for m in r.messages)
    assert any(NEEDLE in r.last_user for r in subs)  # a sub-call read the right chunk
    assert max(r.total_chars for r in roots) < len(DOC) // 4


async def test_ainvoke_and_abatch_run_concurrently(
    llm: RLMChatModel, scripted_server: ScriptedServer
) -> None:
    scripted_server.set_latency(0.2, model="scripted-root")
    docs = [DOC.replace("4729", code) for code in ("111", "222", "333")]
    msgs = await llm.abatch(
        [[SystemMessage(d), HumanMessage("What is the secret code?")] for d in docs]
    )
    assert [m.content for m in msgs] == ["111", "222", "333"]
    assert scripted_server.stats.max_in_flight_by_model["scripted-root"] >= 2


async def test_sync_invoke_works_inside_a_running_loop(llm: RLMChatModel) -> None:
    assert llm.invoke("What is the secret code?", context=DOC).content == "4729"


def test_model_override_and_ls_params(llm: RLMChatModel, scripted_server: ScriptedServer) -> None:
    msg = llm.invoke("What is the secret code?", context=DOC, model="scripted-alt")
    assert msg.response_metadata["model_name"] == "scripted-alt"
    assert scripted_server.stats.by_model.get("scripted-alt", 0) >= 2
    assert "scripted-root" not in scripted_server.stats.by_model
    params = llm._get_ls_params(stop=["x"])
    assert params["ls_provider"] == "rlm"
    assert params["ls_model_name"] == "scripted-root"
    assert params["ls_stop"] == ["x"]
    assert llm._get_ls_params(model="other")["ls_model_name"] == "other"


def test_stop_sequences_cut_the_answer(model: ScriptedModel, llm: RLMChatModel) -> None:
    model.add_rule(root_turn(0), "FINAL(alpha beta gamma delta)")
    assert llm.invoke("Say it", stop=["gamma"]).content == "alpha beta "


def test_root_failure_raises_rlm_error(llm: RLMChatModel, scripted_server: ScriptedServer) -> None:
    scripted_server.inject(Fault(status=500, times=None, match="scripted-root"))
    with pytest.raises(RLMError, match="Root LM call failed") as info:
        llm.model_copy(update={"max_retries": 0}).invoke("What is the secret code?")
    assert info.value.result.status == "error"


# -- input and outcome edge cases ---------------------------------------------------------
@pytest.mark.parametrize(
    "messages",
    [[], "", "   ", [SystemMessage(""), HumanMessage(" \n")], [AIMessage(""), HumanMessage("")]],
    ids=["no-messages", "empty-string", "blank", "empty-messages", "empty-turns"],
)
def test_empty_input_fails_before_any_lm_call(
    llm: RLMChatModel, scripted_server: ScriptedServer, messages: Any
) -> None:
    with pytest.raises(EmptyInputError, match="nothing to work on"):
        llm.invoke(messages)
    with pytest.raises(EmptyInputError):
        llm.invoke(messages, context="")
    assert scripted_server.stats.requests == 0


def test_a_question_alone_or_a_context_alone_is_input(llm: RLMChatModel) -> None:
    assert llm.invoke("What is the secret code?", context=DOC).content == "4729"
    assert llm.invoke("", context=DOC + "\nWhat is the secret code?").content  # task in context


def test_prompt_template_text_reaches_the_repl_as_plain_str(
    model: ScriptedModel, llm: RLMChatModel, scripted_server: ScriptedServer
) -> None:
    # ChatPromptTemplate's messages hold TextAccessor (a str subclass) text.
    code = "```repl\nprint(type(context).__name__ + '!', type(context) is str)\n```"
    model.add_rule(root_turn(0), code)
    model.add_rule(root_turn(1), "FINAL(done)")
    spy = Spy()
    model.add_skill(spy)
    prompt = ChatPromptTemplate.from_messages([("system", "{document}"), ("human", "{question}")])
    msg = (prompt | llm).invoke({"document": DOC, "question": "What type is it?"})
    assert msg.content == "done"
    roots = [r for r in scripted_server.stats.log if r.model == "scripted-root"]
    assert "str! True" in roots[1].last_user
    assert not any("TextAccessor" in m["content"] for r in spy.requests for m in r.messages)


def test_engine_options_are_validated_at_construction() -> None:
    with pytest.raises(ValidationError, match="max_iterations must be at least 1"):
        RLMChatModel(backend="scripted", max_iterations=0)
    with pytest.raises(ValidationError, match="max_depth"):
        RLMChatModel(backend="scripted", max_depth=0)


def test_constructor_context_stays_out_of_payloads(
    llm: RLMChatModel, scripted_server: ScriptedServer
) -> None:
    big = llm.model_copy(update={"context": DOC})
    assert len(str(dumpd(big))) < 2_000
    started: list[Any] = []

    class Starts(BaseCallbackHandler):
        def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
            if kw.get("parent_run_id") is None:  # the RLM call, not its nested sub-calls
                started.append((serialized, kw.get("invocation_params"), kw.get("options")))

    assert big.invoke("What is the secret code?", config={"callbacks": [Starts()]}).content == (
        "4729"
    )
    assert llm.invoke("What is the code?", context=DOC, config={"callbacks": [Starts()]}).content
    payloads = [str(s) for s in started]
    assert len(payloads) == 2 and all(len(p) < 4_000 for p in payloads)
    assert all(NEEDLE not in p for p in payloads)


def test_cache_tells_constructor_contexts_apart(llm: RLMChatModel) -> None:
    cache = InMemoryCache()
    first = llm.model_copy(update={"cache": cache, "context": DOC})
    second = llm.model_copy(update={"cache": cache, "context": DOC.replace("4729", "1")})
    assert first.invoke("What is the secret code?").content == "4729"
    assert second.invoke("What is the secret code?").content == "1"
    assert first.invoke("What is the secret code?").content == "4729"


def test_timeout_with_no_answer_raises(model: ScriptedModel, llm: RLMChatModel) -> None:
    model.add_rule(lambda r: r.is_rlm_root, "FINAL(too late)", latency=5.0)
    chain = llm.model_copy(update={"run_timeout": 0.5}) | StrOutputParser()
    with pytest.raises(RLMTimeoutError, match="run_timeout") as info:
        chain.invoke("What is the secret code?")
    assert isinstance(info.value, TimeoutError)
    assert info.value.result.status == "timeout"


def test_timeout_keeps_a_partial_answer(model: ScriptedModel, llm: RLMChatModel) -> None:
    model.add_rule(root_turn(0), "```repl\nanswer = 'partial 7'\nprint(answer)\n```")
    model.add_rule(root_turn(1), "FINAL(too late)", latency=5.0)
    msg = llm.model_copy(update={"run_timeout": 1.0}).invoke("What is the code?", context=DOC)
    assert (msg.content, msg.response_metadata["finish_reason"]) == ("partial 7", "timeout")


def test_limits_return_the_partial_answer_with_the_status(
    model: ScriptedModel, llm: RLMChatModel
) -> None:
    model.add_rule(lambda r: r.is_rlm_root, "```repl\nanswer = 'partial 7'\nprint(answer)\n```")
    msg = llm.model_copy(update={"max_iterations": 2}).invoke("What is the code?", context=DOC)
    assert msg.response_metadata["status"] == "max_iterations"
    assert msg.response_metadata["finish_reason"] == "max_iterations"
    assert msg.response_metadata["iterations"] == 2


# -- streaming and progress ---------------------------------------------------------------
async def test_astream_chunks_and_progress_events(llm: RLMChatModel) -> None:
    chunks = [c async for c in llm.astream("What is the secret code?", context=DOC)]
    assert "".join(c.text for c in chunks) == "4729"
    assert chunks[-1].chunk_position == "last"
    assert chunks[-1].usage_metadata is not None  # what no nested run carried: 0 here
    assert sum(c.usage_metadata is not None for c in chunks) == 1

    events = [
        e async for e in llm.astream_events("What is the secret code?", version="v2", context=DOC)
    ]
    start = next(e for e in events if e["event"] == "on_chat_model_start")
    custom = [e for e in events if e["event"] == "on_custom_event"]
    names = [e["name"] for e in custom]
    for name in ("rlm_iteration_start", "rlm_root_response", "rlm_code_end", "rlm_final"):
        assert name in names
    assert names.index("rlm_iteration_start") < names.index("rlm_final")
    assert {e["run_id"] for e in custom} == {start["run_id"]}
    assert all("usage" in e["data"] for e in custom)
    streamed = [e for e in events if e["event"] == "on_chat_model_stream"]
    assert "".join(e["data"]["chunk"].text for e in streamed) == "4729"


async def test_progress_reaches_callbacks_of_a_chain(llm: RLMChatModel) -> None:
    prompt = ChatPromptTemplate.from_messages([("system", "{doc}"), ("human", "{question}")])
    chain = prompt | llm
    events = [
        e
        async for e in chain.astream_events(
            {"doc": DOC, "question": "What is the secret code?"}, version="v2"
        )
    ]
    assert any(e["event"] == "on_custom_event" and e["name"] == "rlm_final" for e in events)
    end = [e for e in events if e["event"] == "on_chain_end" and e["name"] == "RunnableSequence"]
    assert end[-1]["data"]["output"].content == "4729"


def test_sync_callbacks_get_progress(llm: RLMChatModel) -> None:
    class Names(BaseCallbackHandler):
        def __init__(self) -> None:
            self.names: list[str] = []

        def on_custom_event(self, name: str, data: Any, **kw: Any) -> None:
            self.names.append(name)

    handler = Names()
    llm.invoke("What is the secret code?", context=DOC, config={"callbacks": [handler]})
    assert handler.names[0] == "rlm_iteration_start"
    assert handler.names[-1] == "rlm_final"
    assert "rlm_subcall_end" in handler.names


# -- LangGraph: only the final answer streams as the node's messages -----------------------
@pytest.mark.parametrize("leak", [False, True], ids=["nostream", "control-without-tag"])
async def test_inner_tokens_do_not_leak_into_graph_messages(
    model: ScriptedModel, leak: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langgraph.graph import START, MessagesState, StateGraph

    # The control proves the test can see a leak: untagged inner calls do stream.
    llm = RLMChatModel(
        llm=ScriptedChatModel(model="scripted-root", scripted=model),
        sub_llm=ScriptedChatModel(model="scripted-sub", scripted=model),
        max_iterations=8,
        backend_kwargs={"stream_tokens": True} if leak else None,
    )

    async def rlm_node(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await llm.ainvoke(state["messages"], context=DOC)]}

    graph = StateGraph(MessagesState).add_node("rlm", rlm_node).add_edge(START, "rlm").compile()
    tokens: list[str] = []
    custom: list[Any] = []
    async for mode, data in graph.astream(
        {"messages": [HumanMessage("What is the secret code?")]}, stream_mode=["messages", "custom"]
    ):
        if mode == "messages":
            tokens.append(data[0].text)
        else:
            custom.append(data)
    if leak:
        assert "".join(tokens) != "4729"
        assert "llm_query_batched" in "".join(tokens)  # the root's code turn leaked
    else:
        assert "".join(tokens) == "4729"
    kinds = [c["rlm"]["event"] for c in custom]
    assert kinds[0] == "iteration_start" and kinds[-1] == "final"


# -- structured output --------------------------------------------------------------------
class Joke(BaseModel):
    setup: str
    punchline: str


class JokeDict(TypedDict):
    setup: str
    punchline: str


def test_structured_output_retries_in_the_same_run(
    model: ScriptedModel, llm: RLMChatModel, scripted_server: ScriptedServer
) -> None:
    model.add_rule(root_turn(0), 'FINAL({"setup": "only a setup"})', times=1)
    out = llm.with_structured_output(Joke, include_raw=True).invoke("Tell me a joke about cats.")
    assert isinstance(out["parsed"], Joke)
    assert out["parsing_error"] is None
    raw = out["raw"]
    assert raw.response_metadata["iterations"] == 2  # the retry continued the same session
    roots = [r for r in scripted_server.stats.log if r.model == "scripted-root"]
    assert len(roots) == 2
    assert "missing required key 'punchline'" in roots[1].last_user


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
@pytest.mark.parametrize(
    "schema", [Joke, JokeDict, Joke.model_json_schema()], ids=["pydantic", "typeddict", "json"]
)
def test_structured_output_schemas_and_methods(llm: RLMChatModel, schema: Any, method: str) -> None:
    out = llm.with_structured_output(schema, method=method, include_raw=True).invoke(
        "Tell me a joke about cats."
    )
    parsed = out["parsed"]
    if schema is Joke:
        assert isinstance(parsed, Joke)
    else:
        assert set(parsed) == {"setup", "punchline"}
    if method == "function_calling":
        assert out["raw"].tool_calls[0]["name"] == ("JokeDict" if schema is JokeDict else "Joke")
    else:
        assert out["raw"].content.startswith("{")


def test_structured_output_failure_is_reported(model: ScriptedModel, llm: RLMChatModel) -> None:
    model.add_rule(lambda r: r.is_rlm_root, "FINAL(no json here)")
    strict_llm = llm.model_copy(update={"max_output_retries": 1})
    out = strict_llm.with_structured_output(Joke, include_raw=True).invoke("A joke?")
    assert out["parsed"] is None
    assert "not a JSON object" in str(out["parsing_error"])
    with pytest.raises(ValueError, match="not a JSON object"):
        strict_llm.with_structured_output(Joke).invoke("A joke?")


# -- tools --------------------------------------------------------------------------------
@tool
def magic_function(input: int) -> int:
    """Apply a magic function to an input."""
    return input + 2


def test_tool_calls_are_returned_for_the_caller(llm: RLMChatModel) -> None:
    msg = llm.bind_tools([magic_function]).invoke("What is magic_function(3)? Use the tool.")
    assert msg.tool_calls[0]["name"] == "magic_function"
    assert msg.tool_calls[0]["args"] == {"input": 3}
    assert msg.response_metadata["finish_reason"] == "tool_calls"
    follow_up = [
        HumanMessage("What is magic_function(3)? Use the tool."),
        msg,
        ToolMessage("5", tool_call_id=msg.tool_calls[0]["id"], name="magic_function"),
    ]
    final = llm.bind_tools([magic_function]).invoke(follow_up)
    assert final.tool_calls == []
    assert final.content == "The tool returned: 5"


def test_required_tool_call_is_enforced_by_a_retry(model: ScriptedModel, llm: RLMChatModel) -> None:
    model.add_rule(root_turn(0), "FINAL(I can answer without tools.)", times=1)
    msg = llm.bind_tools([magic_function], tool_choice="magic_function").invoke("Hello!")
    assert [c["name"] for c in msg.tool_calls] == ["magic_function"]
    assert msg.response_metadata["iterations"] == 2


def test_literal_call_tool_line_is_parsed(model: ScriptedModel, llm: RLMChatModel) -> None:
    model.add_rule(root_turn(0), 'Done.\nFINAL(CALL_TOOL("magic_function", input=7))')
    msg = llm.bind_tools([magic_function]).invoke("Use the tool on 7")
    assert msg.tool_calls[0]["args"] == {"input": 7}
    assert msg.content == ""


def test_repl_tools_run_inside_the_run(model: ScriptedModel, llm: RLMChatModel) -> None:
    calls: list[str] = []

    @tool
    def lookup(key: str) -> str:
        """Look a key up in the inventory."""
        calls.append(key)
        return f"{key}-42"

    code = '```repl\nvalue = lookup(key="alpha")\nFINAL("lookup says " + value)\n```'
    model.add_rule(lambda r: r.is_rlm_root and "lookup(key: string)" in r.system, code)

    class Subcalls(BaseCallbackHandler):
        functions: list[str] = []

        def on_custom_event(self, name: str, data: Any, **kw: Any) -> None:
            if name == "rlm_subcall_end":
                self.functions.append(data["function"])

    handler = Subcalls()
    bound = llm.bind_tools([lookup], mode="repl")
    msg = bound.invoke("What is alpha?", config={"callbacks": [handler]})
    assert msg.content == "lookup says alpha-42"
    assert msg.tool_calls == []
    assert calls == ["alpha"]
    assert handler.functions == ["lookup"]


def test_tool_mode_errors_are_actionable(llm: RLMChatModel) -> None:
    with pytest.raises(TypeError, match="mode='call' for schema-only tools"):
        llm.bind_tools([Joke], mode="repl")
    with pytest.raises(ValueError, match="names no bound tool"):
        llm.bind_tools([magic_function], tool_choice="nope")
    with pytest.raises(TypeError, match="unexpected call arguments \\['temprature'\\]"):
        llm.invoke("hi", temprature=0)


def test_create_agent_loop(llm: RLMChatModel) -> None:
    from langchain.agents import create_agent

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        return f"It is sunny in {city}."

    agent = create_agent(llm, tools=[get_weather])
    out = agent.invoke({"messages": [HumanMessage("What is the weather in 'Paris'?")]})
    kinds = [type(m).__name__ for m in out["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert out["messages"][1].tool_calls[0]["args"] == {"city": "Paris"}
    assert out["messages"][-1].content == "The tool returned: It is sunny in Paris."


# -- LangChain plumbing: cache, rate limiter, serialization --------------------------------
def test_cache_skips_the_second_run(llm: RLMChatModel, scripted_server: ScriptedServer) -> None:
    cached = llm.model_copy(update={"cache": InMemoryCache()})
    first = cached.invoke("What is the secret code?", context=DOC)
    served = scripted_server.stats.requests
    second = cached.invoke("What is the secret code?", context=DOC)
    assert second.content == first.content == "4729"
    assert scripted_server.stats.requests == served
    other = cached.invoke("What is the secret code?", context=DOC.replace("4729", "1"))
    assert other.content == "1"  # a different context is a different cache key


def test_rate_limiter_is_consulted_per_call(llm: RLMChatModel) -> None:
    class Counting(BaseRateLimiter):
        calls = 0

        def acquire(self, *, blocking: bool = True) -> bool:
            type(self).calls += 1
            return True

        async def aacquire(self, *, blocking: bool = True) -> bool:
            type(self).calls += 1
            return True

    limited = llm.model_copy(update={"rate_limiter": Counting()})
    limited.invoke("What is the secret code?", context=DOC)
    list(limited.stream("What is the secret code?", context=DOC))
    assert Counting.calls == 2


def test_serialization_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    llm = RLMChatModel(model="gpt-5-mini", sub_model="gpt-5-nano", max_iterations=12)
    data = dumpd(llm)
    assert "sk-env" not in str(data)
    loaded = load(
        data,
        allowed_objects=[RLMChatModel],
        valid_namespaces=["rlm_integrations"],
        secrets_from_env=True,
    )
    assert isinstance(loaded, RLMChatModel)
    assert loaded.asdict() == llm.asdict()
    assert loaded.api_key is not None and loaded.api_key.get_secret_value() == "sk-env"


def test_langchain_models_as_root_and_sub(model: ScriptedModel) -> None:
    root = ScriptedChatModel(model="scripted-root", scripted=model)
    llm = RLMChatModel(llm=root, sub_model="scripted-sub", max_iterations=8)
    msg = llm.invoke("What is the secret code?", context=DOC)
    assert msg.content == "4729"
    assert set(msg.response_metadata["usage"]["by_model"]) == {"scripted-root", "scripted-sub"}
    assert isinstance(msg, AIMessage)


def test_logger_records_the_trajectory(llm: RLMChatModel, tmp_path: Any) -> None:
    from rlm_engine.logger import RLMLogger

    logger = RLMLogger(tmp_path)
    msg = llm.model_copy(update={"logger": logger}).invoke("What is the secret code?", context=DOC)
    assert logger.last_path is not None
    text = logger.last_path.read_text()
    assert msg.response_metadata["run_id"] in logger.last_path.name
    assert '"4729"' in text


async def test_explicit_api_key_means_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "RLM_API_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    root, _ = make_clients(RLMChatModel(model="gpt-5-mini", api_key="sk-x").engine_config())
    local, _ = make_clients(RLMChatModel(model="gpt-5-mini").engine_config())
    try:
        assert str(root._async.base_url) == "https://api.openai.com/v1/"  # type: ignore[attr-defined]
        assert local.base_url == "http://localhost:8080/v1"  # the engine's keyless default
    finally:
        await root.aclose()
        await local.aclose()


def test_anthropic_backend_with_known_prices(
    model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    llm = RLMChatModel(
        backend="anthropic",
        model="claude-haiku-4-5",
        base_url=scripted_server.url,
        api_key="sk-test",
        max_iterations=8,
    )
    msg = llm.invoke("What is the secret code?", context=DOC)
    assert msg.content == "4729"
    assert set(scripted_server.stats.by_path) == {"/v1/messages"}
    u = msg.response_metadata["usage"]["total"]
    # claude-haiku-4-5 is priced at $1 / $5 per million input / output tokens; prompt-cache
    # reads cost 10% and writes 125% of the input price.
    read, written = u["cached_input_tokens"], u["cache_write_tokens"]
    billed_input = u["input_tokens"] - read - written + 0.1 * read + 1.25 * written
    expected = (billed_input * 1.0 + u["output_tokens"] * 5.0) / 1e6
    assert msg.response_metadata["cost"] == pytest.approx(expected)
