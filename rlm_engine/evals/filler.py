"""Seeded filler prose: the haystack the suites hide their material in.

Plain sentences from a small vocabulary that shares no word with any suite's questions
(no codes, expeditions, messages, users or settings), so filler never answers a question
and never looks like a distractor. Fast enough for the largest default size: 8 M
characters in about a second.
"""

from __future__ import annotations

import random

_ADJ = [
    "quiet",
    "old",
    "narrow",
    "bright",
    "distant",
    "muddy",
    "calm",
    "steep",
    "golden",
    "wooden",
    "faded",
    "crowded",
    "empty",
    "silver",
    "windy",
    "green",
    "gentle",
    "broad",
    "hidden",
    "northern",
]
_NOUN = [
    "river",
    "mill",
    "bridge",
    "meadow",
    "lantern",
    "orchard",
    "harbor",
    "tower",
    "garden",
    "chapel",
    "cottage",
    "valley",
    "forest",
    "market",
    "fountain",
    "pier",
    "hill",
    "barn",
    "road",
    "well",
]
_VERB = [
    "bends past",
    "rises above",
    "leans toward",
    "stands beside",
    "winds around",
    "looks over",
    "faces",
    "circles",
    "shelters",
    "overlooks",
]
_TAIL = [
    "in the morning light",
    "after the autumn rain",
    "as the bells ring",
    "under a grey sky",
    "while the swallows return",
    "before the fair begins",
    "at the edge of town",
    "through the long summer",
]


def filler_line(rng: random.Random) -> str:
    """One sentence of filler."""
    c = rng.choice
    return f"The {c(_ADJ)} {c(_NOUN)} {c(_VERB)} the {c(_ADJ)} {c(_NOUN)} {c(_TAIL)}."


def filler_lines(rng: random.Random, chars: int) -> list[str]:
    """Filler lines whose lengths plus one newline each add up to exactly ``chars``
    (the last line is cut to fit)."""
    lines: list[str] = []
    left = chars
    while left > 0:
        line = filler_line(rng)
        if len(line) + 1 > left:
            line = line[: max(0, left - 1)]
        lines.append(line)
        left -= len(line) + 1
    return lines


def hide(rng: random.Random, chars: int, inserts: list[str]) -> str:
    """``inserts`` (whole lines) at random places in filler; ``chars`` long in total (the
    inserts included) unless they alone are longer."""
    room = chars - sum(len(s) + 1 for s in inserts)
    lines = filler_lines(rng, room) if room > 0 else []
    for text in inserts:
        lines.insert(rng.randrange(len(lines) + 1), text)
    return "\n".join(lines) + "\n"


__all__ = ["filler_line", "filler_lines", "hide"]
