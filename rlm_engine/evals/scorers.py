"""Scorers: an answer and a task in, a score in [0, 1] out.

Lenient about form, strict about content: answers are compared after lower-casing and
dropping punctuation, so "The code is 482913." scores like "482913", but an answer that
also names a distractor's value scores 0 (a model must pick, not list every candidate).

- ``exact``: the normalized answer equals the expected one;
- ``contains``: the expected answer appears in the answer (as whole words);
- ``needle``: ``contains``, and no value of ``meta["distractors"]`` appears;
- ``number``: OOLONG's partial credit for counts, ``0.75 ** |answer - expected|`` (the
  first number in the answer);
- ``list_f1``: F1 of the items found against ``meta["items"]`` (or the expected answer's
  comma-separated items): partial credit for a partial list;
- ``pairs_f1``: ``list_f1`` over ``a-b`` pairs, either order accepted.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from rlm_engine.evals.tasks import Task

Scorer = Callable[[str, Task], float]

_WORD_RE = re.compile(r"[a-z0-9]+(?:[-_.][a-z0-9]+)*")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_PAIR_RE = re.compile(r"(\d+)\s*[-–/,&]\s*(\d+)")


def normalize(text: str) -> str:
    """Lower-case words joined by single spaces: punctuation, quotes and markup dropped."""
    return " ".join(_WORD_RE.findall(text.lower()))


def _has(answer: str, value: str) -> bool:
    """Whether ``value`` appears in ``answer`` as whole words (both normalized)."""
    value = normalize(value)
    return bool(value) and re.search(rf"(?<![\w-]){re.escape(value)}(?![\w-])", answer) is not None


def exact(answer: str, task: Task) -> float:
    return float(normalize(answer) == normalize(task.answer))


def contains(answer: str, task: Task) -> float:
    return float(_has(normalize(answer), task.answer))


def needle(answer: str, task: Task) -> float:
    norm = normalize(answer)
    if not _has(norm, task.answer):
        return 0.0
    wrong = [d for d in task.meta.get("distractors", ()) if _has(norm, str(d))]
    return 0.0 if wrong else 1.0


def number(answer: str, task: Task) -> float:
    m = _NUMBER_RE.search(answer.replace(",", ""))
    expected = _NUMBER_RE.search(task.answer.replace(",", ""))
    if m is None or expected is None:
        return 0.0
    return float(0.75 ** abs(float(m.group()) - float(expected.group())))


def f1(found: set[str], expected: set[str]) -> float:
    """F1 of ``found`` against ``expected`` (1.0 when both are empty)."""
    if not found and not expected:
        return 1.0
    hits = len(found & expected)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(found), hits / len(expected)
    return 2 * precision * recall / (precision + recall)


def _expected_items(task: Task) -> list[str]:
    items = task.meta.get("items")
    if items is None:
        items = [x for x in task.answer.split(",") if x.strip()]
    return [normalize(str(x)) for x in items]


def list_f1(answer: str, task: Task) -> float:
    expected = set(_expected_items(task))
    norm = normalize(answer)
    found = {item for item in expected if _has(norm, item)}
    # Items named that are not expected lower precision: the listed pieces of the answer.
    pieces = {normalize(p) for p in re.split(r",|;|\n| and ", answer) if normalize(p)}
    extra = {p for p in pieces if not any(_has(p, item) for item in expected)}
    return f1(found | extra, expected)


def _pairs(text: str) -> set[str]:
    out = set()
    for a, b in _PAIR_RE.findall(text):
        x, y = sorted((int(a), int(b)))
        out.add(f"{x}-{y}")
    return out


def pairs_f1(answer: str, task: Task) -> float:
    items = task.meta.get("items")
    expected = _pairs(", ".join(items) if items is not None else task.answer)
    return f1(_pairs(answer), expected)


#: Every scorer by the name tasks and user suites give.
SCORERS: dict[str, Scorer] = {
    "exact": exact,
    "contains": contains,
    "needle": needle,
    "number": number,
    "list_f1": list_f1,
    "pairs_f1": pairs_f1,
}


def score(answer: str | None, task: Task) -> float:
    """The task's score for ``answer`` (0 for no answer)."""
    if answer is None or not answer.strip():
        return 0.0
    try:
        scorer = SCORERS[task.scorer]
    except KeyError:
        raise ValueError(f"unknown scorer {task.scorer!r}; scorers: {', '.join(SCORERS)}") from None
    return round(scorer(answer, task), 4)


__all__ = ["SCORERS", "Scorer", "f1", "normalize", "score"]
