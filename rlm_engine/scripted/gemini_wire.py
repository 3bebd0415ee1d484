"""Google's Gemini API (``generateContent`` / ``streamGenerateContent``) as the scripted
server speaks it: request validation and response bodies, close enough to the REST
reference that the ``google-genai`` SDK parses them, streaming and errors included.

A request arrives at ``/v1beta/models/{model}:generateContent`` (or
``:streamGenerateContent?alt=sse``) with ``contents`` (roles ``user`` and ``model``, text
in ``parts``), an optional ``systemInstruction`` and ``generationConfig``; it becomes
the same :class:`~rlm_engine.scripted.model.Request` the OpenAI and Anthropic routes make.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from rlm_engine.scripted.model import Reply, Request
from rlm_engine.scripted.wire import BadRequest, text_pieces

#: Gemini's error ``status`` names by HTTP status.
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def split_path(path: str) -> tuple[str, str] | None:
    """``(model, method)`` of ``/v1beta/models/{model}:{method}`` (or ``/v1/...``), else None."""
    for prefix in ("/v1beta/models/", "/v1/models/", "/v1alpha/models/"):
        if path.startswith(prefix) and ":" in path[len(prefix) :]:
            model, _, method = path[len(prefix) :].rpartition(":")
            if model and method in ("generateContent", "streamGenerateContent"):
                return model, method
    return None


def model_path(path: str) -> str | None:
    """The model of ``GET /v1beta/models/{model}``, else None."""
    for prefix in ("/v1beta/models/", "/v1/models/", "/v1alpha/models/"):
        if path.startswith(prefix) and ":" not in path and len(path) > len(prefix):
            return path[len(prefix) :]
    return None


def _text(parts: Any, where: str) -> str:
    if not isinstance(parts, list):
        raise BadRequest(f"{where}.parts must be a list", where)
    texts = []
    for i, part in enumerate(parts):
        if not isinstance(part, dict):
            raise BadRequest(f"{where}.parts[{i}] must be an object", where)
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
    return "".join(texts)


def parse_gemini(body: Any, model: str, stream: bool) -> Request:
    """Validate a ``generateContent`` body and normalize it to a Request."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("* GenerateContentRequest.contents: contents is not specified", "contents")
    messages: list[dict[str, Any]] = []
    system = body.get("systemInstruction") or body.get("system_instruction")
    if system is not None:
        if not isinstance(system, dict):
            raise BadRequest("systemInstruction must be a Content object", "systemInstruction")
        messages.append(
            {"role": "system", "content": _text(system.get("parts"), "systemInstruction")}
        )
    for i, content in enumerate(contents):
        where = f"contents[{i}]"
        if not isinstance(content, dict):
            raise BadRequest(f"{where} must be a Content object", where)
        role = content.get("role", "user")
        if role not in ("user", "model"):
            raise BadRequest(f"Please use a valid role: user, model. Got {role!r}", where)
        messages.append(
            {
                "role": "assistant" if role == "model" else "user",
                "content": _text(content.get("parts"), where),
            }
        )
    config = body.get("generationConfig") or {}
    if not isinstance(config, dict):
        raise BadRequest("generationConfig must be an object", "generationConfig")
    cap = config.get("maxOutputTokens")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise BadRequest(
            f"maxOutputTokens must be a positive integer, got {cap!r}", "generationConfig"
        )
    stop = config.get("stopSequences")
    return Request(
        messages=messages,
        model=model,
        stream=stream,
        max_tokens=cap,
        stop=stop if isinstance(stop, list) else None,
        raw=body,
    )


def _usage(usage: tuple[int, int], final: bool = True) -> dict[str, int]:
    out = {"promptTokenCount": usage[0], "totalTokenCount": usage[0]}
    if final:
        out.update(candidatesTokenCount=usage[1], totalTokenCount=sum(usage))
    return out


def _finish(reply: Reply) -> str:
    return "MAX_TOKENS" if reply.finish_reason == "length" else "STOP"


def _candidate(text: str, finish: str | None) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    return cand


def gemini_response(req: Request, reply: Reply, usage: tuple[int, int]) -> dict[str, Any]:
    """A whole ``GenerateContentResponse``."""
    return {
        "candidates": [_candidate(reply.text, _finish(reply))],
        "usageMetadata": _usage(usage),
        "modelVersion": req.model,
        "responseId": uuid.uuid4().hex[:20],
    }


def gemini_stream(req: Request, reply: Reply, usage: tuple[int, int]) -> Iterator[dict[str, Any]]:
    """The chunks of ``streamGenerateContent?alt=sse``: text pieces, the last one with the
    finish reason and the complete usage (earlier ones carry the prompt's count, as Gemini's do)."""
    rid = uuid.uuid4().hex[:20]
    pieces = text_pieces(reply.text) or [""]
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        yield {
            "candidates": [_candidate(piece, _finish(reply) if last else None)],
            "usageMetadata": _usage(usage, final=last),
            "modelVersion": req.model,
            "responseId": rid,
        }


def gemini_error(status: int, message: str) -> dict[str, Any]:
    """Gemini's error body."""
    name = _STATUS.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    return {"error": {"code": status, "message": message, "status": name}}


def overflow_message(tokens: int, window: int) -> str:
    """Gemini's words for a prompt past the window."""
    return (
        f"The input token count ({tokens}) exceeds the maximum number of tokens allowed ({window})."
    )


__all__ = [
    "gemini_error",
    "gemini_response",
    "gemini_stream",
    "model_path",
    "overflow_message",
    "parse_gemini",
    "split_path",
]
