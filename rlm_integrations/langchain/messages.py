"""How a LangChain conversation becomes one RLM call: a REPL ``context`` and a short query.

An RLM's root model must never read the long material verbatim, so the conversation is
split:

- **query**: the last human message, plus short system instructions and what happened
  since that message (tool calls the model requested and their results), so an agent
  loop can continue. A human message longer than ``max_query_chars`` is treated as
  material instead (a pasted document with a question in it) and the root LM is told
  the task is inside the context.
- **context**: everything else: earlier turns, system messages that are material, and
  any explicit ``context`` given to the model or per call.
- **system messages** are instructions for the root, each added to the query, whatever
  their length up to ``max_instruction_chars`` (20,000 characters by default: instructions
  are rarely longer, pasted documents usually are); a longer one is material. A message
  says what it is with ``additional_kwargs={"rlm": "instructions"}`` or
  ``{"rlm": "context"}``, which wins over its length. One piece of material is passed as a
  string; several become a list of ``{"role", "content"}`` dicts; explicit context and
  conversation material together become ``{"context": ..., "messages": [...]}``.
- With no material at all, the last human message is also the context (an RLM whose
  prompt is its own context, as ``rlm_query(prompt)`` does).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from rlm_engine.text import clean_text

_TEXT_BLOCKS = {"text", "input_text", "output_text"}
_IGNORED_BLOCKS = {"tool_use", "tool_call", "thinking", "reasoning", "redacted_thinking"}
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


@dataclass
class RLMInput:
    """What one RLM completion receives."""

    context: Any
    query: str | None


class UnsupportedContentError(ValueError):
    """A message carries content an RLM cannot put into its text REPL (image, audio, file)."""


def message_text(message: BaseMessage) -> str:
    """The text of a message as a plain ``str``; rejects media blocks with an actionable error.

    ``BaseMessage.text`` is a ``str`` subclass (``TextAccessor``); the REPL, and the root
    LM's description of ``context``, get plain UTF-8-safe text (``rlm_engine.text``).
    """
    content = message.content
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict):
                kind = block.get("type")
                if kind not in _TEXT_BLOCKS and kind not in _IGNORED_BLOCKS:
                    raise UnsupportedContentError(
                        f"RLMChatModel works on text, but a {message.type} message has a "
                        f"{kind!r} content block. Extract the text first (e.g. PDF to text, "
                        "speech to text) and pass it as the message or as context=."
                    )
    return clean_text(message.text)


def _describe_calls(message: AIMessage) -> list[str]:
    return [
        f"You requested the tool call {c['name']}({json.dumps(c['args'], ensure_ascii=False)}) "
        f"[id {c.get('id')}]."
        for c in message.tool_calls
    ]


def _as_dict(message: BaseMessage) -> dict[str, Any]:
    d: dict[str, Any] = {"role": _ROLES.get(message.type, message.type)}
    d["content"] = message_text(message)
    if message.name:
        d["name"] = message.name
    if isinstance(message, AIMessage) and message.tool_calls:
        d["tool_calls"] = [{"name": c["name"], "args": c["args"]} for c in message.tool_calls]
    if isinstance(message, ToolMessage):
        d["tool_call_id"] = message.tool_call_id
    return d


def _since_last_human(
    messages: Sequence[BaseMessage], max_chars: int
) -> tuple[list[str], list[BaseMessage]]:
    """Lines describing the current turn, and messages too long to show (to the context).

    Nothing is dropped: a message too long for the query is named there and moved to the
    context whole.
    """
    lines: list[str] = []
    overflow: list[BaseMessage] = []
    for m in messages:
        if isinstance(m, AIMessage):
            text = message_text(m).strip()
            if len(text) > max_chars:
                lines.append(f"You said {len(text):,} characters, stored in `context`.")
                overflow.append(m)
            elif text:
                lines.append(f"You said: {text}")
            lines.extend(_describe_calls(m))
        elif isinstance(m, ToolMessage):
            text = message_text(m)
            status = " (error)" if m.status == "error" else ""
            head = f"Result of tool call {m.name or ''} [id {m.tool_call_id}]{status}"
            if len(text) <= max_chars:
                lines.append(f"{head}: {text}")
            else:
                lines.append(f"{head}: {len(text):,} characters, stored in `context`.")
                overflow.append(m)
        else:
            lines.append(f"{_ROLES.get(m.type, m.type).capitalize()}: {message_text(m)}")
    return [ln for ln in lines if ln], overflow


#: System messages up to this many characters are instructions (see the module docs).
MAX_INSTRUCTION_CHARS = 20_000


def is_instruction(message: BaseMessage, max_chars: int = MAX_INSTRUCTION_CHARS) -> bool:
    """Whether a system message is an instruction for the root (else it is material)."""
    if message.type != "system":
        return False
    marked = (message.additional_kwargs or {}).get("rlm")
    if marked in ("instructions", "context"):
        return bool(marked == "instructions")
    return len(message_text(message)) <= max_chars


def split_messages(
    messages: Sequence[BaseMessage],
    context: Any = None,
    *,
    max_query_chars: int = 4_000,
    max_instruction_chars: int = MAX_INSTRUCTION_CHARS,
) -> RLMInput:
    """Split a conversation into the REPL context and the root LM's query (module docs)."""
    messages = list(messages)
    last_human = max((i for i, m in enumerate(messages) if m.type == "human"), default=None)
    before = messages if last_human is None else messages[:last_human]
    after = [] if last_human is None else messages[last_human + 1 :]

    instructions = [
        message_text(m).strip() for m in before if is_instruction(m, max_instruction_chars)
    ]
    material = [m for m in before if not is_instruction(m, max_instruction_chars)]

    parts: list[str] = []
    if any(instructions):
        parts.append("Instructions: " + "\n".join(t for t in instructions if t))
    question: str | None = None
    if last_human is not None:
        question = message_text(messages[last_human])
        if len(question) > max_query_chars:
            material.append(messages[last_human])
            parts.append(
                "The task is stated in the last user message, the last entry of `context`; "
                "find it there and complete it."
                if len(material) > 1
                else "The task is stated inside the context; find it and complete it."
            )
            question = None
        else:
            parts.append(question)
    turn_lines, overflow = _since_last_human(after, max_query_chars)
    material.extend(overflow)
    if turn_lines:
        parts.append("Since that message:\n" + "\n".join(f"- {ln}" for ln in turn_lines))

    conversation: Any
    if not material:
        conversation = None
    elif len(material) == 1 and material[0].type in ("human", "system"):
        conversation = message_text(material[0])
    else:
        conversation = [_as_dict(m) for m in material]

    if context is not None and conversation is not None:
        ctx: Any = {"context": context, "messages": conversation}
    elif context is not None:
        ctx = context
    elif conversation is not None:
        ctx = conversation
    else:
        ctx = question or ""  # no material: the prompt is its own context
    query = "\n\n".join(p for p in parts if p.strip()) or None
    return RLMInput(context=ctx, query=query)
