"""OpenAI and Anthropic wire formats: request validation and response bodies/events.

Kept apart from the HTTP plumbing so each format is readable on its own and can be
checked without a socket. Shapes follow the public API references closely enough that
the official SDKs parse them, streaming included.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from rlm_engine.scripted.model import Reply, Request

OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
ANTHROPIC_ROLES = ("user", "assistant")


class BadRequest(Exception):
    """A request the real API would refuse with 400; the message says what to fix."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def _require(cond: bool, message: str, param: str | None = None) -> None:
    if not cond:
        raise BadRequest(message, param)


def _positive_int(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    _require(
        isinstance(value, int) and not isinstance(value, bool) and value >= 1,
        f"'{key}' must be a positive integer, got {value!r}",
        key,
    )
    return value


def _stop_list(value: Any, key: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    _require(
        isinstance(value, list) and all(isinstance(s, str) for s in value),
        f"'{key}' must be a string or a list of strings",
        key,
    )
    return value


def _common(body: Any) -> tuple[str, list[Any]]:
    _require(isinstance(body, dict), "the request body must be a JSON object")
    model = body.get("model")
    _require(isinstance(model, str) and bool(model), "'model' is required (a string)", "model")
    messages = body.get("messages")
    _require(
        isinstance(messages, list) and bool(messages),
        "'messages' is required (a non-empty list)",
        "messages",
    )
    _require(isinstance(body.get("stream", False), bool), "'stream' must be a boolean", "stream")
    tools = body.get("tools")
    _require(tools is None or isinstance(tools, list), "'tools' must be a list", "tools")
    return model, messages


def _check_content(content: Any, where: str, allow_none: bool) -> None:
    ok = (
        isinstance(content, str)
        or (content is None and allow_none)
        or (isinstance(content, list) and all(isinstance(p, str | dict) for p in content))
    )
    _require(ok, f"{where}.content must be a string or a list of content parts", where)


#: What a strict chat template (Mistral, Llama 2, Gemma and others in vLLM or llama.cpp)
#: raises for roles that do not alternate; the servers answer it with a 400.
ALTERNATION_ERROR = "Conversation roles must alternate user/assistant/user/assistant/..."


def alternation_error(req: Request) -> str | None:
    """The refusal a strict chat template gives ``req``, or None when it passes.

    As those templates check: after the leading system messages, turns alternate user,
    assistant, user, ... starting with user. Tool results (OpenAI ``tool`` messages,
    Anthropic ``tool_result`` blocks) stand on the user's side: several in a row, or
    with the text of the same Anthropic user turn, count as one turn.
    """
    roles = [str(m.get("role")) for m in req.messages]
    while roles and roles[0] in ("system", "developer"):
        roles.pop(0)
    user_side = ("user", "tool", "function")
    turns: list[str] = []
    for role in roles:
        prev = turns[-1] if turns else None
        if prev in user_side and role in user_side and "user" not in (prev, role):
            continue  # several tool results in a row
        if prev in user_side and role in user_side and prev != role:
            turns[-1] = "tool"  # an Anthropic user turn: tool results, then text
            continue
        turns.append(role)
    for i, role in enumerate(turns):
        expected = ("user", "tool") if i % 2 == 0 else ("assistant",)
        if role not in expected:
            return f"{ALTERNATION_ERROR} (message {i} of the conversation is {role!r})"
    return None


# --- OpenAI chat completions ---------------------------------------------------------


def parse_openai(body: Any) -> Request:
    """Validate a ``/v1/chat/completions`` body and normalize it to a Request."""
    model, messages = _common(body)
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        _require(isinstance(msg, dict), f"{where} must be an object", where)
        _require(
            msg.get("role") in OPENAI_ROLES,
            f"{where}.role must be one of {', '.join(OPENAI_ROLES)}; got {msg.get('role')!r}",
            where,
        )
        _check_content(msg.get("content"), where, allow_none=msg["role"] == "assistant")
    n = body.get("n")
    _require(n in (None, 1), "only n=1 is supported by the scripted server", "n")
    fmt = body.get("response_format")
    _require(
        fmt is None or (isinstance(fmt, dict) and isinstance(fmt.get("type"), str)),
        "'response_format' must be an object with a 'type'",
        "response_format",
    )
    max_tokens = _positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens")
    return Request(
        messages=[dict(m) for m in messages],
        model=model,
        api="openai",
        tools=body.get("tools"),
        tool_choice=body.get("tool_choice"),
        response_format=fmt,
        stream=body.get("stream", False),
        max_tokens=max_tokens,
        stop=_stop_list(body.get("stop"), "stop"),
        raw=body,
    )


def _finish_openai(reply: Reply) -> str:
    return {"stop_sequence": "stop"}.get(reply.finish_reason, reply.finish_reason)


def _openai_tool_calls(reply: Reply) -> list[dict[str, Any]]:
    return [
        {
            "id": c["id"],
            "type": "function",
            "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
        }
        for c in reply.tool_calls or []
    ]


def _openai_usage(usage: tuple[int, int], cached: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": usage[0],
        "completion_tokens": usage[1],
        "total_tokens": sum(usage),
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _anthropic_usage(usage: tuple[int, int], cache: tuple[int, int]) -> dict[str, int]:
    """Anthropic's ``input_tokens`` excludes what was read from or written to the cache."""
    read, written = cache
    return {
        "input_tokens": max(0, usage[0] - read - written),
        "output_tokens": usage[1],
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
    }


def openai_completion(req: Request, reply: Reply, usage: tuple[int, int]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = _openai_tool_calls(reply)
    else:
        message["content"] = reply.text
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": req.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_openai(reply),
            }
        ],
        "usage": _openai_usage(usage, req.cache[0]),
        "system_fingerprint": "scripted",
    }


def text_pieces(text: str, max_pieces: int = 48) -> list[str]:
    """Split text into stream deltas: several small ones, never more than ``max_pieces``."""
    if not text:
        return []
    size = max(8, math.ceil(len(text) / max_pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


def openai_stream(req: Request, reply: Reply, usage: tuple[int, int]) -> Iterator[str]:
    """``data:`` payloads of a streamed chat completion, ending with ``[DONE]``."""
    opts = req.raw.get("stream_options") or {}
    include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": req.model,
        "system_fingerprint": "scripted",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        payload: dict[str, Any] = {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            payload["usage"] = None
        return json.dumps(payload)

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for piece in text_pieces(reply.text):
        yield chunk({"content": piece})
    for i, call in enumerate(_openai_tool_calls(reply)):
        head = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
        yield chunk({"tool_calls": [{"index": i, **head}]})
        for piece in text_pieces(call["function"]["arguments"], 8):
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
    yield chunk({}, _finish_openai(reply))
    if include_usage:
        yield json.dumps({**base, "choices": [], "usage": _openai_usage(usage, req.cache[0])})
    yield "[DONE]"


def openai_error(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        429: "rate_limit_exceeded",
    }.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": kind}}


# --- Anthropic messages --------------------------------------------------------------


def parse_anthropic(body: Any, *, count_only: bool = False) -> Request:
    """Validate a ``/v1/messages`` body and normalize it to OpenAI-style messages.

    ``count_only`` is for ``/v1/messages/count_tokens``, which takes no ``max_tokens``.
    """
    model, messages = _common(body)
    max_tokens = _positive_int(body, "max_tokens")
    _require(count_only or max_tokens is not None, "'max_tokens' is required", "max_tokens")
    system = body.get("system")
    _require(
        system is None
        or isinstance(system, str)
        or (isinstance(system, list) and all(isinstance(b, dict) for b in system)),
        "'system' must be a string or a list of text blocks",
        "system",
    )
    out: list[dict[str, Any]] = []
    if system:
        out.append({"role": "system", "content": system})
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        _require(isinstance(msg, dict), f"{where} must be an object", where)
        _require(
            msg.get("role") in ANTHROPIC_ROLES,
            f"{where}.role must be 'user' or 'assistant'; got {msg.get('role')!r}",
            where,
        )
        _check_content(msg.get("content"), where, allow_none=False)
        out.extend(_anthropic_message(msg))
    return Request(
        messages=out,
        model=model,
        api="anthropic",
        tools=body.get("tools"),
        tool_choice=body.get("tool_choice"),
        response_format=None,
        stream=body.get("stream", False),
        max_tokens=max_tokens,
        stop=_stop_list(body.get("stop_sequences"), "stop_sequences"),
        raw=body,
    )


def _anthropic_message(msg: dict[str, Any]) -> list[dict[str, Any]]:
    """One Anthropic message as OpenAI-style messages (tool results become ``tool`` turns)."""
    content = msg["content"]
    if isinstance(content, str):
        return [{"role": msg["role"], "content": content}]
    blocks = [b for b in content if isinstance(b, dict)]
    out: list[dict[str, Any]] = []
    for b in blocks:
        if b.get("type") == "tool_result":
            out.append(
                {"role": "tool", "tool_call_id": b.get("tool_use_id"), "content": b.get("content")}
            )
    text_blocks = [b for b in blocks if b.get("type") != "tool_result"]
    calls = [
        {
            "id": b.get("id"),
            "type": "function",
            "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input") or {})},
        }
        for b in blocks
        if b.get("type") == "tool_use"
    ]
    if text_blocks or not out:
        m: dict[str, Any] = {"role": msg["role"], "content": text_blocks}
        if calls:
            m["tool_calls"] = calls
        out.append(m)
    return out


_ANTHROPIC_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "stop_sequence": "stop_sequence",
}


def _anthropic_blocks(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.text or not reply.tool_calls:
        blocks.append({"type": "text", "text": reply.text})
    for c in reply.tool_calls or []:
        tool_id = c["id"] if c["id"].startswith("toolu_") else f"toolu_{c['id']}"
        blocks.append(
            {"type": "tool_use", "id": tool_id, "name": c["name"], "input": c["arguments"]}
        )
    return blocks


def anthropic_message(req: Request, reply: Reply, usage: tuple[int, int]) -> dict[str, Any]:
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": req.model,
        "content": _anthropic_blocks(reply),
        "stop_reason": _ANTHROPIC_STOP.get(reply.finish_reason, "end_turn"),
        "stop_sequence": reply.stop_sequence,
        "usage": _anthropic_usage(usage, req.cache),
    }


def anthropic_stream(
    req: Request, reply: Reply, usage: tuple[int, int]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(event, data)`` pairs of a streamed message, ``message_start`` to ``message_stop``."""
    start = anthropic_message(req, reply, usage)
    start.update(content=[], stop_reason=None, stop_sequence=None)
    start["usage"] = {**_anthropic_usage(usage, req.cache), "output_tokens": 1}
    yield "message_start", {"type": "message_start", "message": start}
    for index, block in enumerate(_anthropic_blocks(reply)):
        first: dict[str, Any]
        if block["type"] == "text":
            first = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in text_pieces(block["text"])]
        else:
            first = {**block, "input": {}}
            args = json.dumps(block["input"])
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in text_pieces(args, 8)]
        yield (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": first},
        )
        if index == 0:
            yield "ping", {"type": "ping"}
        for delta in deltas:
            yield (
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": _ANTHROPIC_STOP.get(reply.finish_reason, "end_turn"),
                "stop_sequence": reply.stop_sequence,
            },
            "usage": {"output_tokens": usage[1]},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        529: "overloaded_error",
    }.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}
