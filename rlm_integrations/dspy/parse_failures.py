"""Replies DSPy's adapter cannot parse: a bad turn the root is told about, not a crash.

The plain engine answers a malformed turn with feedback and goes on; RLMModule does the
same. A root reply without the signature's output fields becomes a turn in which nothing
ran and whose REPL output says what was wrong with the format (the adapter's message, the
fields expected and found, how to write them), so the next turn can fix it. The turn uses
an iteration like any other; ``MAX_CONSECUTIVE_PARSE_FAILURES`` unparseable turns in a row
end the run with an error instead of spending the whole budget on a model that cannot
write the format.
"""

from __future__ import annotations

import dspy
from dspy.adapters.chat_adapter import ChatAdapter
from dspy.adapters.json_adapter import JSONAdapter
from dspy.utils.exceptions import AdapterParseError

#: Root turns in a row that may fail to parse before the run ends with an error.
MAX_CONSECUTIVE_PARSE_FAILURES = 3

#: First words of the response text of an unparsed turn (quoted, so never run or FINAL).
MARK = "[reply not parsed]"

#: How much of the adapter's message the feedback keeps.
REASON_CHARS = 500


FENCE = "`" * 3


class RootReplyUnparseable(RuntimeError):
    """The root LM's replies could not be parsed too many times in a row."""


def expected_format(fields: list[str]) -> str:
    """How the adapter in effect (``dspy.settings.adapter``, ChatAdapter by default) wants
    the output fields written."""
    adapter = dspy.settings.adapter
    if isinstance(adapter, JSONAdapter):
        return "as one JSON object with the keys " + ", ".join(f'"{f}"' for f in fields)
    if adapter is None or type(adapter) is ChatAdapter:
        headers = ", then ".join(f"`[[ ## {f} ## ]]`" for f in fields)
        return (
            f"each under its own header line: {headers}, each followed by its value, and "
            "end with `[[ ## completed ## ]]`"
        )
    return f"in the format {type(adapter).__name__} describes in the instructions"


def describe_parse_error(error: AdapterParseError) -> str:
    """What was wrong with the reply, for the model: the adapter's own message (without the
    reply it quotes), the output fields expected and those it found, how to write them."""
    fields = list(error.signature.output_fields)
    text = str(error)
    head = text.split(f"Adapter {error.adapter_name} failed to parse", 1)[0].strip()
    reason = head or "the output fields were not found in the reply"
    if len(reason) > REASON_CHARS:  # it may quote the reply's value of a field
        reason = reason[:REASON_CHARS] + " [...]"
    found = list(error.parsed_result or {})
    found_note = f"found [{', '.join(found)}]" if found else "found none of them"
    return (
        f"Your reply could not be parsed ({error.adapter_name}: {reason}). Expected the "
        f"output fields [{', '.join(fields)}] and {found_note}. Write them "
        f"{expected_format(fields)}. Nothing ran this turn."
    )


def render_unparsed_turn(feedback: str) -> str:
    """The engine-facing response text of an unparsed turn: quoted and without code
    fences (the adapter's message may quote the reply), so nothing in it runs."""
    lines = f"{MARK} {feedback}".replace(FENCE, "'''").splitlines()
    return "\n".join(f"> {line}" for line in lines)


def unparsed_feedback(response: str) -> str | None:
    """The feedback of a turn ``render_unparsed_turn`` wrote, else None."""
    if not response.startswith(f"> {MARK} "):
        return None
    text = "\n".join(line.removeprefix("> ") for line in response.splitlines())
    return text.removeprefix(MARK).strip()
