"""One chat-model call as an RLM request: pure, no I/O.

``RLMChatModel`` builds the request (context, query, tools, schema) from LangChain's
messages and call arguments here, then runs it; keeping the build pure lets it be tested
alone and keeps the chat model's hooks to "build, run, convert".
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage

from rlm_engine.environments import HostFunction
from rlm_engine.inputs import EmptyInputError
from rlm_engine.text import clean_value, is_blank
from rlm_integrations.langchain.messages import MAX_INSTRUCTION_CHARS, split_messages
from rlm_integrations.langchain.structured import OutputSchema
from rlm_integrations.langchain.tools import ToolCallRequests, normalize_tool_choice, repl_tools

TASK_IN_CONTEXT = "The task is stated inside the context; find it and complete it."
#: Call arguments the chat model understands (``invoke(msgs, context=doc)``, bound tools...).
CALL_KWARGS = frozenset(
    {"context", "model", "tools", "tool_choice", "response_format", "repl_tools"}
)
#: Call arguments LangChain passes that change nothing here.
IGNORED_KWARGS = frozenset({"stream", "strict", "parallel_tool_calls"})


@dataclass
class RLMRequest:
    """What one call asks of the RLM."""

    context: Any
    query: str | None
    #: A per-call model name (``invoke(..., model=...)``), else the configured one.
    model: str | None = None
    tools: dict[str, HostFunction] = field(default_factory=dict)
    tools_doc: str = ""
    schema: OutputSchema | None = None
    tool_calls: ToolCallRequests | None = None


def rlm_request(
    messages: Sequence[BaseMessage],
    kwargs: dict[str, Any],
    default_context: Any,
    max_query_chars: int,
    max_instruction_chars: int = MAX_INSTRUCTION_CHARS,
) -> RLMRequest:
    """The RLM request for ``messages`` and the call's ``kwargs``.

    Raises ``TypeError`` for call arguments the chat model does not understand, so a typo
    is not silently ignored, and ``EmptyInputError`` when there is neither a question nor
    material.
    """
    unknown = set(kwargs) - CALL_KWARGS - IGNORED_KWARGS
    if unknown:
        raise TypeError(
            f"RLMChatModel got unexpected call arguments {sorted(unknown)}; "
            f"supported: {sorted(CALL_KWARGS)}"
        )
    rlm_in = split_messages(
        list(messages),
        kwargs.get("context", default_context),
        max_query_chars=max_query_chars,
        max_instruction_chars=max_instruction_chars,
    )
    # Checked here, before clients are built (the engine checks again when the session
    # opens): providers reject an empty ``messages`` list, and root turns over nothing
    # could only answer that nothing was asked.
    if is_blank(rlm_in.query) and is_blank(_material(rlm_in.context)):
        raise EmptyInputError(
            f"RLMChatModel got nothing to work on: {len(messages)} message(s) with no text "
            "and no context. Pass a question (llm.invoke('...')) or material "
            "(llm.invoke(question, context=document))."
        )
    # Plain, UTF-8-safe text (the engine's one rule, rlm_engine.text): template text is a
    # TextAccessor, a str subclass.
    request = RLMRequest(
        context=clean_value(rlm_in.context), query=rlm_in.query, model=kwargs.get("model")
    )
    docs: list[str] = []
    if kwargs.get("tools"):
        specs = [t.get("function", t) for t in kwargs["tools"]]
        choice = normalize_tool_choice(kwargs.get("tool_choice"), [s["name"] for s in specs])
        request.tool_calls = ToolCallRequests(specs, choice)
        host = request.tool_calls.host_function()
        request.tools[host.name] = host
        docs.append(request.tool_calls.doc())
    if kwargs.get("repl_tools"):
        tool_fns, doc = repl_tools(kwargs["repl_tools"])
        request.tools.update(tool_fns)
        docs.append(doc)
    request.tools_doc = "\n".join(docs)
    if kwargs.get("response_format"):
        request.schema = OutputSchema.from_response_format(kwargs["response_format"])
        request.query = f"{request.query or TASK_IN_CONTEXT}\n\n{request.schema.instructions()}"
    return request


def _material(context: Any) -> Any:
    """The context without message roles: ``[{"role": "assistant", "content": ""}]`` holds
    no material, though its role is a non-blank string."""
    if isinstance(context, list):
        return [_material(v) for v in context]
    if isinstance(context, dict):
        if "role" in context and "content" in context:
            return [context["content"], *context.get("tool_calls", [])]
        return {k: _material(v) for k, v in context.items()}
    return context


def context_fingerprint(value: Any) -> dict[str, Any] | None:
    """A short stand-in for a context in traces and cache keys: type, size, SHA-256.

    Non-text contexts are hashed by their ``repr``: equal values give equal keys, and an
    object whose ``repr`` is not stable only misses the cache.
    """
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return {"type": type(value).__name__, "chars": len(text), "sha256": digest}


__all__ = [
    "CALL_KWARGS",
    "IGNORED_KWARGS",
    "TASK_IN_CONTEXT",
    "EmptyInputError",
    "RLMRequest",
    "context_fingerprint",
    "rlm_request",
]
