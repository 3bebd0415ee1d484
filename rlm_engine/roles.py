"""Strict role alternation in every request the engine builds.

Many open models' chat templates (served by vLLM, llama.cpp, TGI) refuse a conversation
whose roles do not alternate user/assistant/user/... with a 400 ("Conversation roles must
alternate user/assistant/user/assistant/..."). The engine's requests are built so they
alternate: a message appended after one of the same role is merged into it (its text
joined after a blank line) instead of sent as a second message in a row.
"""

from __future__ import annotations

from rlm_engine.types import Message


def append_message(messages: list[Message], role: str, text: str) -> list[Message]:
    """Append ``text`` as a ``role`` message to ``messages`` (in place, also returned); when
    the last message already has that role, ``text`` is joined to it instead."""
    last = messages[-1] if messages else None
    if last is not None and last.get("role") == role and isinstance(last.get("content"), str):
        messages[-1] = {**last, "content": f"{last['content']}\n\n{text}"}
    else:
        messages.append({"role": role, "content": text})
    return messages


def append_user(messages: list[Message], text: str) -> list[Message]:
    """:func:`append_message` for a user turn: the engine's requests after REPL feedback."""
    return append_message(messages, "user", text)


def alternates(messages: list[Message]) -> bool:
    """Whether ``messages`` are system messages first, then user and assistant turns that
    alternate starting with user: what strict chat templates accept."""
    roles = [m.get("role") for m in messages]
    while roles and roles[0] == "system":
        roles.pop(0)
    return all(role == ("user" if i % 2 == 0 else "assistant") for i, role in enumerate(roles))


__all__ = ["alternates", "append_message", "append_user"]
