"""A SIMULATED direct model for ``rlm eval``'s offline runs: a window, and accuracy that
decays as the prompt grows.

This is a simulation, not a measurement. It exists so the evaluation harness, its
scorers and its report can be tested end to end without a real LLM, with a direct arm
that behaves qualitatively like the curves published for real models (good on short
inputs, worse as the context grows, nothing past the window). Numbers produced with it
say nothing about any real model; reports made from scripted runs say so.

How it answers a request that is neither an RLM root turn nor a chunk/aggregate prompt of
the root policy, and that asks one of the evaluation suites' questions (so: the whole
context and the query in one call, whatever the prompt's framing):

- the true answer is read from the whole request (:func:`eval_reader.read_whole`);
- it is given with probability ``p = 0.97 / (1 + (tokens * difficulty / HALF_TOKENS) **
  1.5)``, where ``tokens`` is the request's size (4 characters per token) and
  ``difficulty`` grows with how much of the context a task needs (1 for one needle, 6
  for pairs over every record); otherwise a plausible wrong answer (a distractor's
  value, part of a list, a miscount);
- past ``WINDOW_TOKENS`` nothing is read: it answers that the input was too long;
- the draw is seeded by the request's text, so the same prompt always gets the same
  answer.
"""

from __future__ import annotations

import hashlib
import random
import re

from rlm_engine.scripted.eval_reader import (
    Kind,
    facts,
    is_chunk_or_aggregate,
    question_kind,
    read_whole,
)
from rlm_engine.scripted.model import Reply, Request
from rlm_engine.scripted.reader import NOT_FOUND

#: The simulated model's input window in tokens (that of gpt-5: 272k input tokens).
WINDOW_TOKENS = 272_000
#: Prompt size at which a one-needle task is answered right about half the time.
HALF_TOKENS = 100_000
#: How much harder each kind of question gets with length (how much it must read).
DIFFICULTY = {"niah": 1.0, "caller": 1.0, "setting": 1.5, "multi": 1.5, "count": 3.0, "pairs": 6.0}


def accuracy(tokens: int, kind: str) -> float:
    """The simulated chance of a right answer for a prompt of ``tokens``."""
    if tokens > WINDOW_TOKENS:
        return 0.0
    return float(0.97 / (1 + (tokens * DIFFICULTY.get(kind, 1.0) / HALF_TOKENS) ** 1.5))


def _wrong(kind: Kind, text: str, truth: str, rng: random.Random) -> str:
    what = kind[0]
    if what == "count":
        n = int(truth) if truth.lstrip("-").isdigit() else 0
        return str(max(0, n + rng.choice((-3, -2, -1, 1, 2, 3)) * max(1, n // 10)))
    if what in ("multi", "pairs"):
        items = [p.strip() for p in truth.split(",") if p.strip() and truth != NOT_FOUND]
        kept = [x for x in items if rng.random() < 0.5][: max(0, len(items) - 1)]
        return ", ".join(kept) if kept else NOT_FOUND
    if what == "niah":
        others = [c for c in re.findall(r"vault is (\d+)", text) if c != truth]
        return rng.choice(others) if others else NOT_FOUND
    if what == "setting":
        values = [v for v in facts(kind, text) if v != truth]
        return values[0] if values else NOT_FOUND
    return NOT_FOUND


def direct_skill(req: Request) -> Reply | None:
    """A whole-context request asking a suite question: the simulated direct answer."""
    if req.is_rlm_root or is_chunk_or_aggregate(req.last_user):
        return None
    text = "\n".join(m["content"] for m in req.messages if m.get("role") != "assistant")
    kind = question_kind(req.last_user)
    if kind is None:
        return None
    tokens = req.total_chars // 4
    if tokens > WINDOW_TOKENS:
        return Reply(text="The input is longer than I can read.")
    truth = read_whole(kind, text)
    seed = hashlib.sha256(text.encode("utf-8", "replace")).digest()
    rng = random.Random(seed)
    if rng.random() < accuracy(tokens, kind[0]):
        return Reply(text=truth)
    return Reply(text=_wrong(kind, text, truth, rng))


SKILLS = [direct_skill]

__all__ = ["DIFFICULTY", "HALF_TOKENS", "SKILLS", "WINDOW_TOKENS", "accuracy", "direct_skill"]
