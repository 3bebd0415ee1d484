"""The best answer a run that did not finish can still give.

After ``max_iterations`` the root is asked once more for its answer (when
``final_answer_on_max_iterations`` and the budget allow); otherwise, or when that fails,
a REPL variable with a conventional name is used. The REPL may still be busy after a
timeout, so every lookup is bounded.

The last request is flagged, not left to be recognized by its text: during that root call
:func:`is_final_answer_request` is True, so a client that answers it its own way (the
DSPy integration's root, with its extract predictor) reads the flag. The flag lives in a
context variable set around that one call: other runs, other tasks and later calls never
see it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING

from rlm_engine import prompts
from rlm_engine.environments import Environment
from rlm_engine.parsing import find_final
from rlm_engine.roles import append_user

if TYPE_CHECKING:  # session.py imports this module
    from rlm_engine.session import RLMSession

PARTIAL_ANSWER_NAMES = ("final_answer", "answer", "result")
PEEK_SECONDS = 5.0  # how long a lookup waits for a REPL variable

_FINAL_ANSWER_REQUEST: ContextVar[bool] = ContextVar("rlm_final_answer_request", default=False)


def is_final_answer_request() -> bool:
    """True inside the root call that asks for a last answer after ``max_iterations``.

    Read it from ``LMClient.acomplete``: the request's last (user) message then ends
    with ``prompts.FINAL_ANSWER_REQUEST``, joined to the last REPL feedback, and its
    reply is read as text (``FINAL(...)``).
    """
    return _FINAL_ANSWER_REQUEST.get()


@contextlib.contextmanager
def final_answer_request() -> Iterator[None]:
    """Flag the root call made inside this block as the final-answer request."""
    token = _FINAL_ANSWER_REQUEST.set(True)
    try:
        yield
    finally:
        _FINAL_ANSWER_REQUEST.reset(token)


async def peek(env: Environment, name: str) -> tuple[bool, str]:
    """A REPL variable, if the REPL answers soon: after a timeout it may still be busy."""
    try:
        return await asyncio.wait_for(env.get_variable(name), PEEK_SECONDS)
    except Exception:
        return False, ""


async def best_partial_answer(session: RLMSession) -> str | None:
    """The answer of an unfinished run, or None."""
    st, budget = session.state, session.shared.budget
    if (
        st.status == "max_iterations"
        and session.config.run.final_answer_on_max_iterations
        and not budget.timed_out()
        and budget.reserve() is None
    ):
        # Joined to the last REPL feedback: strict chat templates refuse two user turns.
        msgs = append_user(st.messages(), prompts.FINAL_ANSWER_REQUEST)
        try:
            with final_answer_request():
                resp = await session.root_client.acomplete(
                    msgs,
                    model=session.root_model,
                    timeout=budget.clamp(session.config.reply.timeout),
                )
        except Exception:
            resp = None
        if resp is not None:
            session.record_usage(resp, role="root")
            directive = find_final(resp.text)
            if directive and directive.kind == "FINAL":
                return directive.value
            if directive:
                found, value = await peek(session.env, directive.value)
                if found:
                    return value
            return resp.text.strip() or None
    for name in PARTIAL_ANSWER_NAMES:
        found, value = await peek(session.env, name)
        if found:
            return value
    return None


__all__ = [
    "PARTIAL_ANSWER_NAMES",
    "best_partial_answer",
    "final_answer_request",
    "is_final_answer_request",
    "peek",
]
