"""From a finished RLM run to what LangChain gets back.

``to_message`` builds the ``AIMessage`` (answer, tool calls, exact usage, run metadata)
and ``message_chunks`` streams it. ``answer_problem`` and ``continue_with`` implement the
fix-up turn: when a final answer misses the schema or a required tool call, the same
session is reopened with feedback and run again by the engine's one loop.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk

from rlm_engine import RLMResult, RLMSession
from rlm_integrations.langchain.structured import (
    OutputSchema,
    OutputValidationError,
    retry_message,
)
from rlm_integrations.langchain.tools import ToolCallRequests

_STREAM_CHUNK_CHARS = 24


class RLMError(RuntimeError):
    """The RLM run failed (e.g. its root LM kept failing); ``result`` has the details."""

    def __init__(self, message: str, result: RLMResult) -> None:
        super().__init__(message)
        self.result = result


class RLMTimeoutError(RLMError, TimeoutError):
    """The run hit ``run_timeout`` before it had any answer, even a partial one.

    A ``TimeoutError``, as a timed-out ``ChatOpenAI`` call raises one, so a chain fails
    loudly (and ``with_retry``/``with_fallbacks`` can act) instead of passing ``''`` on.
    """


class RLMNoAnswerError(RLMError):
    """The run stopped at a limit (``budget``, ``max_iterations``) with no answer at all."""


def to_message(
    result: RLMResult,
    model: str,
    schema: OutputSchema | None,
    requests: ToolCallRequests | None,
    stop: list[str] | None,
    usage_metadata: UsageMetadata,
) -> AIMessage:
    """The AIMessage of a finished run: answer, tool calls, usage, run metadata.

    ``usage_metadata`` is what the message itself reports (the calls no nested run
    reported, see :mod:`.usage`); the whole run's usage goes to ``response_metadata``.
    A run that stopped at a limit keeps its partial answer; one with no answer at all
    raises (:class:`RLMTimeoutError`, :class:`RLMNoAnswerError`) rather than return ``''``.
    """
    if result.status == "error":
        raise RLMError(f"RLM run failed: {result.error}", result)
    text = result.answer or ""
    calls: list[dict[str, Any]] = []
    if requests is not None:
        text, calls = requests.finish(text)
    if result.status != "final" and not text.strip() and not calls:
        raise _no_answer(result)
    if schema is not None and schema.method == "function_calling" and not calls:
        try:
            value = schema.check(text)
        except OutputValidationError:
            pass
        else:
            calls = [{"name": schema.name, "args": value, "id": _call_id(), "type": "tool_call"}]
            text = ""
    text = _cut_at_stop(text, stop or [])
    usage = result.usage
    if calls:
        finish = "tool_calls"
    elif result.status == "final":
        finish = "stop"
    else:
        finish = result.status
    return AIMessage(
        content=text,
        tool_calls=calls,
        usage_metadata=usage_metadata,
        response_metadata={
            "model_name": model,
            "model_provider": "rlm",
            "finish_reason": finish,
            "status": result.status,
            "iterations": len(result.iterations),
            "path": result.path,  # "rlm" (the loop) or "direct" (one LM call): see mode
            "path_reason": result.path_reason,
            "usage": {
                "total": usage.total.to_dict(),
                "root": usage.root.to_dict(),
                "sub": usage.sub.to_dict(),
                "by_model": {k: v.to_dict() for k, v in usage.by_model().items()},
            },
            "cost": usage.cost,
            "run_id": result.run_id,
            "duration": result.duration,
            **({"error": result.error} if result.error else {}),
        },
    )


def _no_answer(result: RLMResult) -> RLMError:
    spent = f"{len(result.iterations)} root turns, {result.usage.calls} LM calls"
    if result.status == "timeout":
        return RLMTimeoutError(
            f"The RLM run hit its run_timeout after {result.duration:.1f}s ({spent}) with "
            "no answer, not even a partial one. Raise run_timeout, or ask for less.",
            result,
        )
    why = f": {result.error}" if result.error else ""
    return RLMNoAnswerError(
        f"The RLM run stopped at its {result.status} limit ({spent}) with no answer{why}. "
        "Raise the limit (max_iterations, max_llm_calls, max_total_tokens, max_cost).",
        result,
    )


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cuts = [text.find(s) for s in stop if s and s in text]
    return text[: min(cuts)] if cuts else text


def answer_problem(
    result: RLMResult, schema: OutputSchema | None, requests: ToolCallRequests | None
) -> str | None:
    """Why a final answer is not acceptable to the caller, as feedback for the root LM."""
    if result.status != "final":
        return None
    answer = result.answer or ""
    if requests is not None:
        _, calls = requests.finish(answer)
        problem = requests.problem(calls)
        if problem or calls:
            return problem
    if schema is not None:
        try:
            schema.check(answer)
        except OutputValidationError as e:
            return retry_message(e, schema)
    return None


def continue_with(session: RLMSession, feedback: str) -> bool:
    """Reopen a finished run with ``feedback`` (see ``RLMSession.continue_with``)."""
    return session.continue_with(feedback)


def message_chunks(msg: AIMessage) -> Iterator[ChatGenerationChunk]:
    """The answer as streamed chunks; the last carries tool calls, usage and metadata."""
    text = msg.text
    step = _STREAM_CHUNK_CHARS
    for i in range(0, len(text), step):
        yield ChatGenerationChunk(message=AIMessageChunk(content=text[i : i + step]))
    yield ChatGenerationChunk(
        message=AIMessageChunk(
            content="",
            tool_call_chunks=[
                {
                    "name": c["name"],
                    "args": _json(c["args"]),
                    "id": c["id"],
                    "index": i,
                    "type": "tool_call_chunk",
                }
                for i, c in enumerate(msg.tool_calls)
            ],
            usage_metadata=msg.usage_metadata,
            response_metadata=msg.response_metadata,
            chunk_position="last",
        )
    )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
