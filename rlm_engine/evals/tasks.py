"""One evaluation task, and the sizes tasks are generated at.

A task is what every arm is asked: the same context and query, scored the same way. Its
``size`` is the nominal context length in tokens the suite generated it at (the context
itself is ``size * CHARS_PER_TOKEN`` characters, within a line), so runs of different
arms at one size are comparable and a plot's x axis needs no tokenizer.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

#: Characters per token of the generated text (the rule of thumb ``rlm_engine.estimate``
#: uses for English text and code).
CHARS_PER_TOKEN = 4
#: The issue's default sizes: 8k, 32k, 128k, 512k and 2M tokens.
DEFAULT_SIZES = (8_000, 32_000, 128_000, 512_000, 2_000_000)

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")


@dataclass
class Task:
    """One question about one context, with its expected answer and scorer.

    ``meta`` holds what a scorer may need beyond ``answer`` (distractor values a right
    answer must not contain, the items of a list answer, ...).
    """

    suite: str
    size: int
    index: int
    seed: int
    context: str | list[str]
    query: str
    answer: str
    scorer: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def task_id(self) -> str:
        return f"{self.suite}/{self.size}/{self.seed}/{self.index}"

    @property
    def context_chars(self) -> int:
        if isinstance(self.context, str):
            return len(self.context)
        return sum(len(x) for x in self.context)

    @property
    def context_tokens(self) -> int:
        """The context's length in tokens, as the suites measure it."""
        return self.context_chars // CHARS_PER_TOKEN


def parse_size(text: str | int) -> int:
    """``"8k"`` -> 8000, ``"2M"`` -> 2000000, ``"512"`` -> 512 (tokens)."""
    if isinstance(text, int):
        value = text
    else:
        m = _SIZE_RE.match(text)
        if not m:
            raise ValueError(f"a size is a number of tokens like 8k, 128k or 2M, got {text!r}")
        unit = {"": 1, "k": 1_000, "m": 1_000_000}[m.group(2).lower()]
        value = int(float(m.group(1)) * unit)
    if value < 256:
        raise ValueError(f"a context size must be at least 256 tokens, got {text!r}")
    return value


def size_label(tokens: int) -> str:
    """``8000`` -> ``"8k"``, ``2000000`` -> ``"2M"`` (the inverse of :func:`parse_size`)."""
    if tokens >= 1_000_000 and tokens % 100_000 == 0:
        return f"{tokens / 1_000_000:g}M"
    if tokens >= 1_000 and tokens % 100 == 0:
        return f"{tokens / 1_000:g}k"
    return str(tokens)


def rng_for(suite: str, seed: int, size: int, index: int) -> random.Random:
    """The generator of one task: the same (suite, seed, size, index) gives the same task
    on every machine and Python version (``random.Random`` seeds strings with SHA-512)."""
    return random.Random(f"rlm-eval:{suite}:{seed}:{size}:{index}")


__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_SIZES",
    "Task",
    "parse_size",
    "rng_for",
    "size_label",
]
