"""Replies cut at the reply cap, seen through DSPy: detected, not run, and told to the root.

A server stops a reply at the cap (``max_tokens`` on the ``dspy.LM``, or the server's
own, llama.cpp's ``n_predict``) and says so (``finish_reason: "length"``). DSPy only logs
a warning: its adapter still parses the cut reply, so a root turn's half-written ``code``
field would run (half a computation, or a SyntaxError that hides the reason) and a cut
``llm_query`` answer would look whole. The engine already handles cut replies from its
own clients (``LMResponse.truncated``); this module finds the cut for calls DSPy made.

DSPy keeps no per-call finish reason on the prediction, so the cut is read from the
history entries DSPy appended during the call (its response objects carry the finish
reason) whose token counts match those the call's own usage tracker saw — the tracker
is scoped to the call, the history is global, and concurrent calls must not be
confused. When history is off, a reply whose output tokens reach the LM's ``max_tokens``
counts as cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rlm_engine import prompts

#: How providers spell a reply stopped at its cap (OpenAI/vLLM/llama.cpp, Anthropic,
#: Gemini's upper case is lowered first).
CUT_REASONS = frozenset({"length", "max_tokens"})

#: First words of the response text of a cut root turn (quoted, so never run or FINAL).
MARK = "[reply cut at the reply cap]"


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def finish_reasons(response: Any) -> list[str]:
    """Every finish reason in a DSPy history entry's ``response``: an OpenAI-shaped
    response (LiteLLM's, or a dict), or a list of DSPy's native responses."""
    items = response if isinstance(response, list | tuple) else [response]
    out: list[str] = []
    for r in items:
        reason = _get(r, "finish_reason")
        if reason is not None:
            out.append(str(getattr(reason, "value", reason)).lower())
            continue
        for choice in _get(r, "choices") or []:
            reason = _get(choice, "finish_reason")
            if reason is not None:
                out.append(str(getattr(reason, "value", reason)).lower())
    return out


def _tokens(usage: Any) -> tuple[int, int]:
    usage = usage or {}
    i = _get(usage, "prompt_tokens") or _get(usage, "input_tokens") or 0
    o = _get(usage, "completion_tokens") or _get(usage, "output_tokens") or 0
    return int(i), int(o)


def history_mark() -> object | None:
    """The newest entry of DSPy's global history now: ``entries_since`` starts after it."""
    from dspy.clients.base_lm import GLOBAL_HISTORY

    return GLOBAL_HISTORY[-1] if GLOBAL_HISTORY else None


def entries_since(mark: object | None) -> list[Mapping[str, Any]]:
    """History entries appended after ``mark`` (found by identity: the list is trimmed
    from the front when full, so positions move)."""
    from dspy.clients.base_lm import GLOBAL_HISTORY

    new: list[Mapping[str, Any]] = []
    for entry in reversed(GLOBAL_HISTORY):
        if entry is mark:
            break
        new.append(entry)
    new.reverse()
    return new


def reply_cap(lm: Any) -> int | None:
    """The reply cap set on a ``dspy.LM`` (``max_tokens``/``max_completion_tokens``)."""
    kwargs = getattr(lm, "kwargs", None) or {}
    cap = kwargs.get("max_tokens") or kwargs.get("max_completion_tokens")
    return int(cap) if cap else None


def was_cut(
    calls: Iterable[tuple[int, int]], entries: list[Mapping[str, Any]], cap: int | None
) -> bool:
    """Whether the last of ``calls`` ((input, output) tokens, as the call's usage tracker
    saw them) was cut: a history entry with those tokens says so, or it reached ``cap``."""
    seen = list(calls)
    if not seen:
        return False
    last = seen[-1]
    for entry in reversed(entries):
        if _tokens(entry.get("usage")) == last:
            return any(r in CUT_REASONS for r in finish_reasons(entry.get("response")))
    return cap is not None and last[1] >= cap


def render_cut_turn(reasoning: str, tokens: int) -> str:
    """The engine-facing response text of a cut root turn: the reasoning and a note,
    quoted and without code fences, so the cut code is not run."""
    note = f"{MARK} {prompts.truncated_reply_message(tokens, 0)}"
    lines = [*(reasoning or "").strip().splitlines(), note]
    return "\n".join(f"> {line}" for line in lines)


def cut_note(response: str) -> str | None:
    """The note of a turn ``render_cut_turn`` wrote, else None."""
    for line in response.splitlines():
        text = line.removeprefix("> ")
        if text.startswith(MARK):
            return text.removeprefix(MARK).strip()
    return None
