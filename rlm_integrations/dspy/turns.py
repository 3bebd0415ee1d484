"""What the root predictor reads and writes each turn, and how that maps onto the engine.

The engine keeps the conversation as ``Iteration`` records; the root predictor instead gets
two structured inputs (``variables_info``, ``repl_history``) and answers with ``reasoning``
and ``code``. ``render_turn`` turns that answer into the response text the engine parses,
``format_history`` turns the engine's iterations back into ``repl_history``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any

from rlm_engine.types import Iteration
from rlm_integrations.dspy.cut_replies import MARK, cut_note
from rlm_integrations.dspy.history import describe_history
from rlm_integrations.dspy.parse_failures import unparsed_feedback

PREVIEW_CHARS = 400
OUTPUT_CHARS = 8_000

_FENCED = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)(?:\n[ \t]*```|\Z)", re.S)


def describe_value(name: str, value: Any, desc: str = "") -> str:
    """One variable as the root LM sees it: name, type, size and a head/tail preview."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    size = len(text)
    if size > PREVIEW_CHARS:
        half = PREVIEW_CHARS // 2
        preview = f"{text[:half]} [... {size - PREVIEW_CHARS:,} characters ...] {text[-half:]}"
    else:
        preview = text
    extra = ""
    if isinstance(value, list | tuple | dict):
        extra = f", {len(value)} items"
    elif isinstance(value, str):
        extra = f", {value.count(chr(10)) + 1:,} lines"
    lines = [f"`{name}` ({type(value).__name__}, {size:,} characters{extra})"]
    if desc:
        lines.append(f"  description: {desc}")
    lines.append(f"  preview: {preview!r}")
    return "\n".join(lines)


def describe_inputs(
    inputs: dict[str, Any], descs: dict[str, str], histories: Collection[str] = ()
) -> str:
    """``variables_info``: every input described; ``histories`` name the ``dspy.History``
    inputs (their values already the plain message lists), listed turn by turn."""
    return "\n".join(
        describe_history(n, v, descs.get(n, ""))
        if n in histories
        else describe_value(n, v, descs.get(n, ""))
        for n, v in inputs.items()
    )


def _clip(text: str, limit: int = OUTPUT_CHARS) -> str:
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    return (
        f"{text[:head]}\n[... {len(text) - limit:,} characters cut ...]\n{text[-(limit - head) :]}"
    )


def _reasoning_of(response: str) -> str:
    text = _FENCED.sub("", response)
    return "\n".join(line.removeprefix("> ") for line in text.strip().splitlines()).strip()


def format_history(iterations: list[Iteration]) -> str:
    """``repl_history``: every earlier turn with its reasoning, code and output."""
    if not iterations:
        return "No turns yet: nothing has run in the REPL."
    parts = []
    for it in iterations:
        unparsed = unparsed_feedback(it.response)
        if unparsed is not None:  # the reply had no readable fields: say what was wrong
            parts.append(
                f"=== Turn {it.index} ===\nReasoning: (your reply could not be parsed)\n"
                f"Code: (none)\nOutput:\n[format error] {unparsed}"
            )
            continue
        cut = cut_note(it.response)
        if cut is not None:  # cut at the reply cap: its code did not run
            reasoning = _reasoning_of(it.response).split(MARK, 1)[0].strip()
            parts.append(
                f"=== Turn {it.index} ===\nReasoning: {reasoning}\nCode: (cut off, not run)\n"
                f"Output:\n[reply cut] {cut}"
            )
            continue
        lines = [f"=== Turn {it.index} ===", f"Reasoning: {_reasoning_of(it.response)}"]
        if not it.code_blocks:
            lines.append("Code: (none)")
            lines.append("Output:\n(no code ran: write Python in the `code` field)")
        for block in it.code_blocks:
            out = []
            if block.stdout.strip():
                out.append(block.stdout.rstrip())
            if block.stderr.strip():
                out.append(f"[stderr]\n{block.stderr.rstrip()}")
            if block.error:
                out.append(f"[error]\n{block.error}")
            body = "\n".join(out) if out else "(no output: print what you want to see)"
            lines.append(f"Code:\n```python\n{block.code.rstrip()}\n```")
            lines.append(f"Output:\n{_clip(body)}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def strip_fences(code: str) -> str:
    """The Python inside a fenced block, or the text itself when it has no fence."""
    code = code.strip()
    if "```" not in code:
        return code
    m = _FENCED.search(code)
    if m is None:
        return code.replace("```", "").strip()
    return m.group(2).strip()


def render_turn(reasoning: str, code: str) -> str:
    """The engine-facing response text: quoted reasoning, then one ```repl block.

    Reasoning lines are quoted with ``> `` so a ``FINAL(...)`` the LM writes in prose is not
    read as the final answer; only code (``SUBMIT``/``FINAL`` from code) can end the run.
    """
    quoted = "\n".join(f"> {line}" for line in (reasoning or "").strip().splitlines())
    body = strip_fences(code or "")
    if not body:
        return quoted
    return f"{quoted}\n```repl\n{body}\n```"
