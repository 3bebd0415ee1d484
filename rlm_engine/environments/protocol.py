"""The framed wire protocol between the host and an isolated REPL worker. Standard library only.

A frame is an 8-byte big-endian length followed by that many bytes of UTF-8 JSON. The worker
imports this module too (it is shipped to the worker next to ``repl_core.py``), so both ends
share one definition of the format. The host treats every frame from a worker as untrusted:
a length above ``MAX_FRAME_BYTES`` or undecodable JSON is a ``ProtocolError``.

Messages (``op`` field):

- host -> worker: ``init``, ``exec``, ``get_var``, ``list_vars``, ``interrupt``,
  ``result`` (answer to a ``call``), ``shutdown``
- worker -> host: ``hello``, ``ready``, ``init_error``, ``done``, ``var``, ``vars``,
  ``call`` (a host function call; a batched call is one frame carrying the list)
"""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO

HEADER = struct.Struct(">Q")
MAX_FRAME_BYTES = 512 * 1024 * 1024


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


def encode(message: dict[str, Any], *, strict: bool = False) -> bytes:
    """One frame; values that JSON cannot represent are sent as their ``str()``, or, with
    ``strict``, raise ``TypeError``/``ValueError`` (the caller explains the problem)."""
    default = None if strict else str
    text = json.dumps(message, ensure_ascii=False, default=default)
    body = text.encode("utf-8", "surrogatepass")
    if len(body) > MAX_FRAME_BYTES:
        raise ProtocolError(f"message of {len(body):,} bytes exceeds {MAX_FRAME_BYTES:,}")
    return HEADER.pack(len(body)) + body


def decode_length(header: bytes) -> int:
    length: int
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame length {length:,} exceeds {MAX_FRAME_BYTES:,} bytes")
    return length


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body.decode("utf-8", "surrogatepass"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"undecodable frame: {e}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ProtocolError("frame is not a JSON object with an 'op' field")
    return message


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    """Blocking read of one frame; ``None`` on a clean end of stream."""
    header = _read_exactly(stream, HEADER.size)
    if header is None:
        return None
    body = _read_exactly(stream, decode_length(header))
    if body is None:
        raise ProtocolError("stream ended inside a frame")
    return decode_body(body)


def _read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    chunks: list[bytes] = []
    remaining = n
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            if remaining == n:
                return None
            raise ProtocolError("stream ended inside a frame")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
