"""``max_errors``: stop a run whose model keeps writing code that fails.

A root that cannot get its code to run (a wrong assumption about the context's shape, an
API it misremembers) may retry the same failing idea until ``max_iterations`` or the budget
ends the run, paying for every turn. ``max_errors=N`` ends it after N consecutive turns in
which a code cell raised, as the paper authors' library does (a turn counts once however
many of its cells failed; a turn whose cells all ran, or that wrote no code, resets the
count). The streak is read from the recorded iterations, so a resumed run counts the same.
"""

from __future__ import annotations

from collections.abc import Sequence

from rlm_engine.types import Iteration


def turn_failed(it: Iteration) -> bool:
    """True when one of the turn's code cells raised (or timed out, or crashed the REPL)."""
    return any(b.error is not None or b.timed_out or b.crashed for b in it.code_blocks)


def error_streak(iterations: Sequence[Iteration]) -> int:
    """How many of the last turns in a row had a failing code cell."""
    n = 0
    for it in reversed(iterations):
        if not turn_failed(it):
            break
        n += 1
    return n


def too_many_errors(iterations: Sequence[Iteration], max_errors: int | None) -> str | None:
    """The run's error message when the streak reached ``max_errors``, else None."""
    if max_errors is None:
        return None
    streak = error_streak(iterations)
    if streak < max_errors:
        return None
    last = next(
        (b.error for b in reversed(iterations[-1].code_blocks) if b.error is not None), None
    )
    message = (
        f"Stopped after {streak} consecutive turns whose code raised an error "
        f"(max_errors={max_errors})."
    )
    if last:
        message += f" The last error: {last.strip().splitlines()[-1][:500]}"
    return message + " Raise max_errors, or None to let the root keep trying."


__all__ = ["error_streak", "too_many_errors", "turn_failed"]
