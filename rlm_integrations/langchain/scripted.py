"""``ScriptedChatModel``: the offline scripted model as a LangChain chat model.

Lets demos and tests use LangChain-model code paths (``RLMChatModel(llm=...)``, LangGraph
nodes, token streaming) without an API key: it answers in-process from
:class:`rlm_engine.scripted.ScriptedModel` and reports usage like a real provider.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from rlm_engine.scripted import Reply, Request, ScriptedModel


def to_openai_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as OpenAI-style dicts with plain-text content."""
    roles = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
    out: list[dict[str, Any]] = []
    for m in messages:
        d: dict[str, Any] = {"role": roles.get(m.type, "user"), "content": m.text}
        if isinstance(m, ToolMessage):
            d["tool_call_id"] = m.tool_call_id
        if isinstance(m, AIMessage) and m.tool_calls:
            d["tool_calls"] = [
                {"id": c["id"], "name": c["name"], "arguments": json.dumps(c["args"])}
                for c in m.tool_calls
            ]
        out.append(d)
    return out


class ScriptedChatModel(BaseChatModel):
    """A deterministic chat model for offline runs (see :mod:`rlm_engine.scripted`).

    ``scripted`` is the model to answer from (rules and skills included; for RLMChatModel's
    tool calls and structured output install :mod:`rlm_engine.scripted.skills.langchain`);
    a fresh :class:`ScriptedModel` when omitted. Streaming yields the answer in ``chunk_chars``
    pieces so token streams behave like a real provider's.
    """

    model_name: str = Field(default="scripted-root", alias="model")
    scripted: Any = Field(default=None, exclude=True)
    chunk_chars: int = 8

    model_config = ConfigDict(populate_by_name=True)

    def model_post_init(self, __context: Any) -> None:
        if self.scripted is None:
            self.scripted = ScriptedModel()

    @property
    def _llm_type(self) -> str:
        return "scripted-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        specs = [convert_to_openai_tool(t) for t in tools]
        if isinstance(tool_choice, str) and tool_choice not in ("auto", "none", "any", "required"):
            tool_choice = {"type": "function", "function": {"name": tool_choice}}
        return self.bind(tools=specs, tool_choice=tool_choice, **kwargs)

    def _reply(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[Reply, UsageMetadata]:
        req = Request(
            messages=to_openai_dicts(messages),
            model=kwargs.get("model") or self.model_name,
            tools=kwargs.get("tools"),
            tool_choice=kwargs.get("tool_choice"),
            stop=stop,
        )
        reply = self.scripted.respond(req)
        inp, out = self.scripted.usage_for(req, reply)
        return reply, UsageMetadata(input_tokens=inp, output_tokens=out, total_tokens=inp + out)

    def _message(self, reply: Reply, usage: UsageMetadata, model: str) -> AIMessage:
        calls = [
            {"name": c["name"], "args": c["arguments"], "id": c["id"], "type": "tool_call"}
            for c in reply.tool_calls or []
        ]
        return AIMessage(
            content=reply.text,
            tool_calls=calls,
            usage_metadata=usage,
            response_metadata={
                "model_name": model,
                "model_provider": "scripted",
                "finish_reason": reply.finish_reason,
            },
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply, usage = self._reply(messages, stop, kwargs)
        time.sleep(reply.latency)
        return self._result(reply, usage, kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply, usage = self._reply(messages, stop, kwargs)
        await asyncio.sleep(reply.latency)  # a rule's latency, without blocking the loop
        return self._result(reply, usage, kwargs)

    def _result(self, reply: Reply, usage: UsageMetadata, kwargs: dict[str, Any]) -> ChatResult:
        msg = self._message(reply, usage, kwargs.get("model") or self.model_name)
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _chunks(self, msg: AIMessage) -> Iterator[ChatGenerationChunk]:
        text = msg.text
        pieces = [text[i : i + self.chunk_chars] for i in range(0, len(text), self.chunk_chars)]
        for piece in pieces:
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                tool_call_chunks=[
                    {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                    for i, c in enumerate(msg.tool_calls)
                ],
                usage_metadata=msg.usage_metadata,
                response_metadata=msg.response_metadata,
                chunk_position="last",
            )
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        msg = self._generate(messages, stop, **kwargs).generations[0].message
        assert isinstance(msg, AIMessage)
        yield from self._chunks(msg)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        msg = (await self._agenerate(messages, stop, **kwargs)).generations[0].message
        assert isinstance(msg, AIMessage)
        for chunk in self._chunks(msg):
            yield chunk
