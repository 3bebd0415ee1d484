"""``dspy.History`` inputs: earlier turns of a chat, as DSPy's own predictors take them.

A signature such as ``"history: dspy.History, question -> answer"`` hands a module the
turns before this one (``History.messages``: a list of dicts keyed by the signature's
fields). DSPy's adapters replay them as chat messages; an RLM root does not read its
inputs whole, so here the messages become what every other input is:

- a REPL variable under the field's name holding the messages as a plain ``list`` of
  ``dict`` (a ``History`` object is not JSON, and an isolated REPL takes only JSON);
- in the root's ``variables_info``, a compact listing of the turns (each field clipped,
  the latest turns first to be kept when there are many) instead of a JSON preview, so a
  follow-up like "and in French?" can be answered from the listing without any code.

A History field may be left out of a call (or be ``None``): the conversation is then new,
as with ``dspy.Predict``.
"""

from __future__ import annotations

import json
import typing
from typing import Any

import dspy
import pydantic

#: Characters of each field value shown in the listing.
VALUE_CHARS = 200
#: Earlier turns listed at most (the latest ones); all of them are in the REPL variable.
LISTED_TURNS = 12


def is_history_field(info: Any) -> bool:
    """Whether a signature field is typed ``dspy.History`` (or ``dspy.History | None``)."""
    annotation = getattr(info, "annotation", None)
    return annotation is dspy.History or dspy.History in typing.get_args(annotation)


def history_fields(signature: type[dspy.Signature]) -> list[str]:
    return [n for n, info in signature.input_fields.items() if is_history_field(info)]


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: containers copied, models dumped, the rest as text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, pydantic.BaseModel):
        return plain(value.model_dump(mode="json"))
    return str(value)


def history_messages(name: str, value: Any) -> list[dict[str, Any]]:
    """The messages of a History input as plain dicts; ``None`` is an empty history."""
    if value is None:
        return []
    if isinstance(value, dspy.History):
        messages: Any = value.messages
    elif isinstance(value, list | tuple):  # the messages themselves
        messages = value
    else:
        raise TypeError(
            f"Input {name!r} is typed dspy.History; pass dspy.History(messages=[...]) (or "
            f"the list of message dicts), not {type(value).__name__}."
        )
    if not all(isinstance(m, dict) for m in messages):
        raise TypeError(f"Input {name!r}: every history message must be a dict of fields.")
    return [plain(m) for m in messages]


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) > VALUE_CHARS:
        text = f"{text[: VALUE_CHARS - 20]} [... {len(text) - VALUE_CHARS + 20:,} more]"
    return repr(text) if isinstance(value, str) else text


def describe_history(name: str, messages: list[dict[str, Any]], desc: str = "") -> str:
    """The root's view of a History input: what the variable holds and the turns listed."""
    if not messages:
        return (
            f"`{name}` (dspy.History, no earlier turns: this is the first turn of the "
            "conversation; an empty list in the REPL)"
            + (f"\n  description: {desc}" if desc else "")
        )
    keys: list[str] = []
    for message in messages:
        keys += [k for k in message if k not in keys]
    size = len(json.dumps(messages, ensure_ascii=False))
    lines = [
        f"`{name}` (dspy.History: {_turns(len(messages))} of this conversation, oldest "
        f"first; in the REPL a list of dicts with keys {', '.join(keys)}; {size:,} characters)"
    ]
    if desc:
        lines.append(f"  description: {desc}")
    shown = messages[-LISTED_TURNS:]
    skipped = len(messages) - len(shown)
    if skipped:
        lines.append(f"  (turns 1-{skipped} are not listed here: read them from `{name}`)")
    for number, message in enumerate(shown, skipped + 1):
        fields = "; ".join(f"{k}: {_clip(v)}" for k, v in message.items())
        lines.append(f"  turn {number}: {fields}")
    return "\n".join(lines)


def _turns(n: int) -> str:
    return "1 earlier turn" if n == 1 else f"{n} earlier turns"


__all__ = [
    "describe_history",
    "history_fields",
    "history_messages",
    "is_history_field",
    "plain",
]
