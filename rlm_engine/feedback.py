"""What the root LM reads after a turn: each code block's capped output, as pure functions.

The REPL's output limit (``max_output_chars``) applies to each stream of a block, to each
block's text and to the whole turn, so a chatty cell can never flood the root's window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rlm_engine import prompts
from rlm_engine.parsing import truncate_output
from rlm_engine.text import clean_text
from rlm_engine.types import CodeBlockResult, ExecResult, SubCall

if TYPE_CHECKING:  # session.py imports this module
    from rlm_engine.session import RLMSession


def capped_block(code: str, r: ExecResult, calls: list[SubCall], limit: int) -> CodeBlockResult:
    """A cell's result as the trajectory keeps it (stderr and errors get half the room)."""
    return CodeBlockResult(
        code=code,
        stdout=truncate_output(r.stdout, limit),
        stderr=truncate_output(r.stderr, limit // 2),
        error=truncate_output(r.error, limit // 2) if r.error else None,
        final=r.final,
        timed_out=r.timed_out,
        crashed=r.crashed,
        duration=r.duration,
        subcalls=calls,
    )


def block_feedback(i: int, b: CodeBlockResult, limit: int) -> str:
    """One block's text; ``i`` numbers it (0: no header, for a lone block's event)."""
    parts = [b.stdout.rstrip()] if b.stdout.strip() else []
    if b.stderr.strip():
        parts.append(f"[stderr]\n{b.stderr.rstrip()}")
    if b.error:
        parts.append(f"[error]\n{b.error}")
    body = "\n".join(parts) if parts else "(no output)"
    header = f"[block {i}]" if i else ""
    text = f"{header}\n{body}" if header else body
    return truncate_output(text, limit)


def turn_feedback(
    blocks: list[CodeBlockResult],
    note: str | None,
    index: int,
    remaining: int,
    limit: int,
    finish: str | None = None,
) -> str:
    """The next user turn: the blocks' capped output, a note, the turns left and how to
    finish (``finish``: see ``prompts.finish_hint``)."""
    # Each block is capped, and so is their sum: the limit is per turn, not per block.
    outputs = "\n\n".join(block_feedback(i, b, limit) for i, b in enumerate(blocks, 1))
    parts = [truncate_output(outputs, limit)] if blocks else []
    if note is not None:
        parts.append(note)
    return prompts.repl_feedback(parts, index, remaining, finish)


def reopen(session: RLMSession, feedback: str) -> bool:
    """Reopen a run that reached a final answer, with ``feedback`` as the next user turn.

    Integrations use it when an answer fails validation (a schema, a typed output field):
    the same REPL and history go on, instead of a new run. Returns False when there is no
    final answer to reopen. Grants one more iteration if the limit is hit.
    """
    st = session.state
    if st.status != "final" or not st.iterations:
        return False
    st.iterations[-1].feedback = clean_text(feedback)
    st.final_answer = st.status = st.error = st.partial_answer = None
    if st.iteration >= session.config.run.max_iterations:
        session.config = session.config.replace(max_iterations=st.iteration + 1)
    return True


__all__ = ["block_feedback", "capped_block", "reopen", "turn_feedback"]
