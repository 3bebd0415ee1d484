"""Token usage as LangChain counts it: every LM call once, under its own model's name.

``get_usage_metadata_callback`` sums the ``usage_metadata`` of every chat-model run,
keyed by ``response_metadata["model_name"]`` (LangSmith does the same). Its totals must
equal what the scripted server itself counted per model, whichever clients run the RLM.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, get_usage_metadata_callback
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult

from rlm_engine.clients import LMClient, make_client
from rlm_engine.scripted.server import ScriptedServer
from rlm_integrations.langchain import RLMChatModel

DOC = "\n".join(
    "The secret code is 4729." if i == 1500 else f"Line {i}: nothing of interest today."
    for i in range(3000)
)


class HttpChatModel(BaseChatModel):
    """A minimal provider chat model: calls the scripted server over HTTP (OpenAI API)
    and reports the usage and model name the server answered with, as ChatOpenAI does."""

    model_name: str
    base_url: str

    @property
    def _llm_type(self) -> str:
        return "http-test"

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None, **kw: Any) -> Any:
        client: LMClient = make_client(
            "openai", {"model_name": self.model_name, "base_url": self.base_url, "api_key": "k"}
        )
        roles = {"human": "user", "ai": "assistant", "system": "system"}
        try:
            resp = await client.acomplete(
                [{"role": roles[m.type], "content": m.text} for m in messages]  # type: ignore[misc]
            )
        finally:
            await client.aclose()
        inp, out = resp.input_tokens, resp.output_tokens
        msg = AIMessage(
            content=resp.text,
            usage_metadata=UsageMetadata(
                input_tokens=inp, output_tokens=out, total_tokens=inp + out
            ),
            response_metadata={"model_name": resp.model},
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _generate(self, messages: list[BaseMessage], stop: Any = None, **kw: Any) -> Any:
        raise NotImplementedError("the RLM calls its LangChain models asynchronously")


def server_counts(server: ScriptedServer) -> dict[str, dict[str, int]]:
    """Tokens per model as the server counted them, in UsageMetadata's shape."""
    out: dict[str, dict[str, int]] = {}
    for r in server.stats.log:
        if r.model:
            u = out.setdefault(r.model, {"input_tokens": 0, "output_tokens": 0})
            u["input_tokens"] += r.prompt_tokens
            u["output_tokens"] += r.completion_tokens
    for u in out.values():
        u["total_tokens"] = u["input_tokens"] + u["output_tokens"]
    return out


def callback_counts(cb: Any) -> dict[str, dict[str, int]]:
    keys = ("input_tokens", "output_tokens", "total_tokens")
    counted = {m: {k: int(u.get(k, 0)) for k in keys} for m, u in cb.usage_metadata.items()}
    return {m: u for m, u in counted.items() if u["total_tokens"]}


def test_langchain_root_and_sub_models_are_counted_once(scripted_server: ScriptedServer) -> None:
    url = scripted_server.base_url
    llm = RLMChatModel(
        llm=HttpChatModel(model_name="scripted-root", base_url=url),
        sub_llm=HttpChatModel(model_name="scripted-sub", base_url=url),
        max_iterations=8,
    )
    with get_usage_metadata_callback() as cb:
        msg = llm.invoke("What is the secret code?", context=DOC)
    assert msg.content == "4729"
    expected = server_counts(scripted_server)
    assert set(expected) == {"scripted-root", "scripted-sub"}
    assert callback_counts(cb) == expected
    # Every call was a nested LangChain run: the RLM message itself adds nothing.
    assert msg.usage_metadata is not None and msg.usage_metadata["total_tokens"] == 0
    total = msg.response_metadata["usage"]["total"]
    assert total["total_tokens"] == sum(u["total_tokens"] for u in expected.values())


def test_engine_clients_attribute_each_model_exactly(scripted_server: ScriptedServer) -> None:
    llm = RLMChatModel(
        model="scripted-root",
        sub_model="scripted-sub",
        base_url=scripted_server.base_url,
        api_key="sk-test",
        max_iterations=8,
    )

    class Runs(BaseCallbackHandler):
        def __init__(self) -> None:
            self.parents: dict[UUID, UUID | None] = {}
            self.names: dict[UUID, str] = {}

        def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
            self.parents[kw["run_id"]] = kw.get("parent_run_id")
            self.names[kw["run_id"]] = kw.get("name") or ""

        def on_llm_start(self, serialized: Any, prompts: Any, **kw: Any) -> None:
            self.on_chat_model_start(serialized, prompts, **kw)  # the RLM's inner LM calls

    runs = Runs()
    with get_usage_metadata_callback() as cb:
        msg = llm.invoke(
            [HumanMessage("What is the secret code?")],
            context=DOC,
            config={"callbacks": [runs]},
        )
    assert msg.content == "4729"
    expected = server_counts(scripted_server)
    assert set(expected) == {"scripted-root", "scripted-sub"}
    assert callback_counts(cb) == expected
    # Every LM call is its own run in the call's run tree (tests/langchain/test_tracing.py),
    # carrying its usage: the message itself adds nothing.
    assert msg.usage_metadata is not None and msg.usage_metadata["total_tokens"] == 0
    assert msg.response_metadata["model_name"] == "scripted-root"
    (top,) = [r for r, parent in runs.parents.items() if parent is None]
    subs = [r for r in runs.parents if runs.names[r].endswith(":scripted-sub")]
    assert len(subs) == sum(1 for r in scripted_server.stats.log if r.model == "scripted-sub")
    roots = [r for r in runs.parents if runs.names[r] == "root:scripted-root"]
    assert len(roots) == sum(1 for r in scripted_server.stats.log if r.model == "scripted-root")
    assert top not in subs + roots


def test_engine_client_for_root_and_sub_reports_sub_calls_as_runs(
    scripted_server: ScriptedServer,
) -> None:
    # One client for both (no sub model): root turns and sub-calls are their own runs, the
    # message counts nothing again, and the per-model sum stays exact.
    llm = RLMChatModel(
        model="scripted-root", base_url=scripted_server.base_url, api_key="k", max_iterations=8
    )
    with get_usage_metadata_callback() as cb:
        msg = llm.invoke("What is the secret code?", context=DOC)
    assert msg.content == "4729"
    assert callback_counts(cb) == server_counts(scripted_server)
    assert msg.usage_metadata is not None and msg.usage_metadata["total_tokens"] == 0


async def test_engine_sub_calls_do_not_stream_as_graph_messages(
    scripted_server: ScriptedServer,
) -> None:
    from langgraph.graph import START, MessagesState, StateGraph

    llm = RLMChatModel(
        model="scripted-root",
        sub_model="scripted-sub",
        base_url=scripted_server.base_url,
        api_key="k",
        max_iterations=8,
    )

    async def rlm_node(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await llm.ainvoke(state["messages"], context=DOC)]}

    graph = StateGraph(MessagesState).add_node("rlm", rlm_node).add_edge(START, "rlm").compile()
    tokens = [
        data[0].text
        async for data in graph.astream(
            {"messages": [HumanMessage("What is the secret code?")]}, stream_mode="messages"
        )
    ]
    assert "".join(tokens) == "4729"
