"""Crash replay: rebuild a REPL from a recorded run without paying for its sub-calls again.

A checkpointed ``RLMState`` holds every code cell a run executed and the answers of the
sub-calls those cells made, but not the REPL namespace itself (it cannot be serialized).
After a crash the session re-runs the recorded cells in a fresh REPL; while it does, the
sub-call host (``rlm_engine.subcalls``) asks :class:`RecordedAnswers` for each call's
recorded answer before calling a model, so the same prompts get the same answers for free.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from rlm_engine.environments import Environment
from rlm_engine.types import Iteration

# Sub-calls whose recorded answers are served again. Bound tools are re-run: their
# results may be any JSON value, while the trajectory keeps only their text.
REPLAYABLE = frozenset({"llm_query", "llm_query_batched", "rlm_query", "rlm_query_batched"})


def _kind(function: str) -> str:
    """``llm_query`` and ``llm_query_batched`` (likewise ``rlm_*``) share recorded answers."""
    return "rlm" if function.startswith("rlm") else "llm"


class RecordedAnswers:
    """Recorded sub-call answers, each served once, in recorded order, while replaying.

    Empty outside :func:`replay_cells`, so a live run always calls the model.
    """

    def __init__(self) -> None:
        self._answers: dict[tuple[str, str], deque[str]] = {}

    def load(self, iterations: Iterable[Iteration]) -> None:
        self._answers = {}
        for it in iterations:
            for block in it.code_blocks:
                for call in block.subcalls:
                    if call.error is None and call.function in REPLAYABLE:
                        # Not keyed by model: ``call.model`` holds the model that answered,
                        # while the code asks with the name it passed (usually None).
                        key = (_kind(call.function), call.prompt_sha)
                        self._answers.setdefault(key, deque()).append(call.response)

    def clear(self) -> None:
        self._answers = {}

    def take(self, function: str, prompt_sha: str) -> str | None:
        """The next recorded answer to this prompt, or None when the model must be called."""
        q = self._answers.get((_kind(function), prompt_sha))
        return q.popleft() if q else None


async def replay_cells(
    env: Environment, iterations: list[Iteration], answers: RecordedAnswers
) -> None:
    """Re-run the recorded cells in ``env`` with ``answers`` loaded from the same iterations."""
    answers.load(iterations)
    try:
        for it in iterations:
            for block in it.code_blocks:
                await env.execute(block.code)
    finally:
        answers.clear()
