"""The scripted sub-model's reading of ``rlm eval``'s built-in suites.

The keyword reader (:mod:`rlm_engine.scripted.reader`) answers plain needle and counting
questions. The evaluation suites (:mod:`rlm_engine.evals.suites`) ask what it cannot:
which vault's code among look-alike vaults, every item of a list, how many messages are
about a topic that is never written (it must be inferred from the wording), which users
form pairs, which function calls another, what a setting ends up as. This skill reads
them exactly, per chunk (the root policy's chunk prompt) and when combining chunk answers
(its aggregate prompt), so the offline model exercises the ``rlm`` arms end to end.

A test double, not a model of an LLM: it knows the suites' wording through regular
expressions and infers a message's topic from cue words. It answers only chunk and
aggregate prompts whose question is a suite's question; every other request falls through
to the other skills and the policies. :mod:`rlm_engine.scripted.direct_sim` uses the same
reading for its simulated direct model.
"""

from __future__ import annotations

import re
from collections import Counter

from rlm_engine.scripted.model import Reply, Request
from rlm_engine.scripted.reader import AGGREGATE_HEAD, CHUNK_HEAD, NOT_FOUND

Kind = tuple[str, str]  # (kind, argument): ("niah", "amber-falcon"), ("count", "billing")

_QUESTIONS: list[tuple[str, re.Pattern[str]]] = [
    ("niah", re.compile(r"access code for the ([\w-]+) vault\?")),
    ("multi", re.compile(r"List every item the ([\w-]+) expedition packed")),
    ("count", re.compile(r"How many messages are about (\w+)\?")),
    (
        "pairs",
        re.compile(
            r"List every pair of users who live in the same city and who both "
            r"wrote about (\w+)"
        ),
    ),
    ("caller", re.compile(r"Which function calls (\w+)\(\)\?")),
    ("setting", re.compile(r"What value does the setting (\w+) end up with")),
]
#: Cue words of each topic: how the simulated reader infers a label never written.
TOPIC_CUES: dict[str, tuple[str, ...]] = {
    "billing": ("charged", "refund", "invoice", "payment", "bill ", "price"),
    "shipping": ("parcel", "courier", "tracking", "delivery", "arrived"),
    "technical": ("crashes", "error", "log in", "freezes", "load"),
    "praise": ("thank", "love", "fantastic", "wonderful", "great job"),
}
_MESSAGE_RE = re.compile(r"^Message \d+ from user (\d+)(?: \(([^)]+)\))?: (.*)$", re.M)
_CHUNK_RE = re.compile(re.escape(CHUNK_HEAD) + r"\nQuestion: (?P<q>.*?)\n\nText:\n(?P<t>.*)", re.S)
_AGG_RE = re.compile(
    re.escape(AGGREGATE_HEAD) + r"\nQuestion: (?P<q>.*?)\n\nPartial answers \(JSON list\):\n"
    r"(?P<c>.*)",
    re.S,
)


def question_kind(text: str) -> Kind | None:
    """The suite question ``text`` asks, if any."""
    for kind, regex in _QUESTIONS:
        m = regex.search(text)
        if m:
            return kind, m.group(1)
    return None


def topic_of(message: str) -> str | None:
    """The topic a message is about, from its cue words (None when none is present)."""
    low = message.lower()
    counts = {t: sum(low.count(c) for c in cues) for t, cues in TOPIC_CUES.items()}
    best = max(counts, key=lambda t: counts[t])
    return best if counts[best] else None


def facts(kind: Kind, text: str) -> list[str]:
    """What ``text`` holds for the question, in reading order."""
    what, arg = kind
    a = re.escape(arg)
    if what == "niah":
        return re.findall(rf"access code for the {a} vault is (\d+)", text)
    if what == "multi":
        return re.findall(rf"the {a} expedition packed an? ([\w-]+)", text)
    if what in ("count", "pairs"):
        matches = [m for m in _MESSAGE_RE.finditer(text) if topic_of(m.group(3)) == arg]
        if what == "count":
            return [str(len(matches))]
        return [f"{m.group(1)}@{m.group(2)}" for m in matches if m.group(2)]
    if what == "caller":
        found: list[str] = []
        for m in re.finditer(r"^def (\w+)\(.*?(?=^def |\Z)", text, re.M | re.S):
            body = "\n".join(
                ln for ln in m.group(0).splitlines()[1:] if '"""' not in ln and "#" not in ln
            )
            if re.search(rf"\b{a}\(", body):
                found.append(m.group(1))
        return found
    if what == "setting":
        return re.findall(rf"^(?:settings\.)?{a}\s*=\s*(\S+)\s*$", text, re.M)
    return []


def chunk_answer(kind: Kind, text: str) -> str:
    """The answer for one chunk, in a form :func:`combine` reads back."""
    found = facts(kind, text)
    if not found:
        return NOT_FOUND
    if kind[0] in ("niah", "caller"):
        return Counter(found).most_common(1)[0][0]
    if kind[0] == "setting":
        return found[-1]  # later assignments win
    return ", ".join(found)


def _pieces(candidates: list[str]) -> list[str]:
    return [p.strip() for c in candidates for p in c.split(",") if p.strip()]


def combine(kind: Kind, candidates: list[str]) -> str:
    """One answer from the chunks' answers, as the suite asks for it."""
    cands = [c.strip() for c in candidates if c.strip() and c.strip() != NOT_FOUND]
    cands = [c for c in cands if not c.startswith("Error:")]
    what = kind[0]
    if what == "count":
        return str(sum(int(c) for c in cands if c.lstrip("-").isdigit()))
    if not cands:
        return NOT_FOUND
    if what in ("niah", "caller"):
        return Counter(cands).most_common(1)[0][0]
    if what == "setting":
        return cands[-1]
    if what == "multi":
        return ", ".join(dict.fromkeys(_pieces(cands)))
    # pairs: join the users of each city found across chunks
    by_city: dict[str, list[int]] = {}
    for piece in dict.fromkeys(_pieces(cands)):
        uid, _, city = piece.partition("@")
        if uid.isdigit() and city:
            by_city.setdefault(city, []).append(int(uid))
    pairs = sorted(
        f"{min(a, b)}-{max(a, b)}"
        for users in by_city.values()
        for i, a in enumerate(users)
        for b in users[i + 1 :]
    )
    return ", ".join(pairs) if pairs else NOT_FOUND


def read_whole(kind: Kind, text: str) -> str:
    """The answer from reading all of ``text`` at once (the direct simulation's truth)."""
    return combine(kind, [chunk_answer(kind, text)])


def eval_skill(req: Request) -> Reply | None:
    """Chunk and aggregate prompts of the root policy whose question is a suite's."""
    if req.is_rlm_root:
        return None
    prompt = req.last_user.strip()
    m = _CHUNK_RE.match(prompt)
    if m:
        kind = question_kind(m["q"])
        return Reply(text=chunk_answer(kind, m["t"])) if kind else None
    m = _AGG_RE.match(prompt)
    if m:
        kind = question_kind(m["q"])
        if kind is None:
            return None
        import json

        try:
            cands = [str(c) for c in json.loads(m["c"].strip())]
        except (json.JSONDecodeError, TypeError):
            cands = [ln.strip() for ln in m["c"].splitlines()]
        return Reply(text=combine(kind, cands))
    return None


def is_chunk_or_aggregate(prompt: str) -> bool:
    prompt = prompt.strip()
    return bool(_CHUNK_RE.match(prompt) or _AGG_RE.match(prompt))


SKILLS = [eval_skill]

__all__ = [
    "SKILLS",
    "TOPIC_CUES",
    "chunk_answer",
    "combine",
    "eval_skill",
    "facts",
    "question_kind",
    "read_whole",
    "topic_of",
]
