"""Window-aware root history: compaction when the root's prompt nears its window.

Every iteration appends the root's reply and the REPL output to the root's prompt; with
the default ``max_output_chars`` 30 iterations reach ~150k tokens, past many windows.
Before each root call the prompt is measured against the root model's window; past
``compaction_threshold`` of it, the iterations before the last ``keep_last_iterations``
are replaced by a summary the root writes (exact intermediate values, the next step). A
provider's context-length error triggers the same compaction and one retry.

Nothing is lost: ``RLMState.iterations`` keeps every iteration (the trace and the
checkpoint hold the whole transcript), and the compacted iterations are put in the REPL
as ``compacted_history`` for code to consult. Only the prompt shrinks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rlm_engine.roles import append_message, append_user
from rlm_engine.types import Iteration, LMResponse, Message
from rlm_engine.windows import (
    CHARS_PER_TOKEN,
    estimate_tokens,
    is_context_overflow,
    known_window,
    window_from_error,
)

if TYPE_CHECKING:  # session.py imports this module
    from rlm_engine.session import RLMSession

#: The REPL variable holding the compacted iterations (query, code, output per turn).
HISTORY_VARIABLE = "compacted_history"
#: Characters of each code block and output kept in the mechanical digest.
_DIGEST_KEEP = 600
#: Share of the root's window a summary may take.
_SUMMARY_SHARE = 0.3
#: Compactions and retries after a provider says the prompt is too long.
_OVERFLOW_RETRIES = 3

#: What the root is asked for when its history is folded (the paper authors' library asks
#: the same at 85% of the window: progress and exact intermediate values).
COMPACTION_REQUEST = (
    "Your conversation is about to be shortened to fit your context window. Write a summary "
    "that lets you continue without the earlier turns: what you have established so far, "
    "every exact intermediate value you will need (numbers, names, REPL variable names and "
    "what they hold), what failed, and your next step. Do not write code; do not give "
    "FINAL yet. The REPL keeps every variable."
)


def compacted_summary(upto: int, summary: str) -> str:
    """The assistant turn standing for iterations 1..upto."""
    return f"[Summary of my iterations 1-{upto}, written when my history was compacted]\n{summary}"


def after_compaction(upto: int, variable: str) -> str:
    """The user turn after a summary: where the full transcript went, and go on."""
    return (
        f"Iterations 1-{upto} were folded into the summary above to fit your context window. "
        f"Every REPL variable is still there; their code and output are in the REPL list "
        f"`{variable}`. Continue from your next step."
    )


@dataclass
class Compaction:
    """Iterations ``1..upto`` of the root history are replaced by ``summary``."""

    upto: int
    summary: str
    #: "summary" (written by the root) or "digest" (mechanical, when the root could not).
    kind: str = "summary"

    def to_dict(self) -> dict[str, Any]:
        return {"upto": self.upto, "summary": self.summary, "kind": self.kind}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Compaction:
        return cls(int(d["upto"]), str(d["summary"]), str(d.get("kind", "summary")))


def history_messages(
    system: str, first_user: str, iterations: list[Iteration], compaction: Compaction | None
) -> list[Message]:
    """The root's prompt: system, opening message, the latest summary, later iterations.

    Roles alternate (``rlm_engine.roles``): an iteration without feedback (a reopened
    final one has it again) never leaves two assistant turns in a row."""
    msgs: list[Message] = [
        {"role": "system", "content": system},
        {"role": "user", "content": first_user},
    ]
    start = 0
    if compaction is not None:
        msgs.append(
            {
                "role": "assistant",
                "content": compacted_summary(compaction.upto, compaction.summary),
            }
        )
        msgs.append(
            {"role": "user", "content": after_compaction(compaction.upto, HISTORY_VARIABLE)}
        )
        start = compaction.upto
    for it in iterations[start:]:
        append_message(msgs, "assistant", it.response)
        if it.feedback:
            append_user(msgs, it.feedback)
    return msgs


def root_window(session: RLMSession) -> int:
    """The root model's input window in tokens: configured, known, or the client's own."""
    configured = session.config.history.root_context_window
    client = session.root_client
    model = session.root_model or client.model_name
    window = configured or known_window(model) or int(client.context_chars / CHARS_PER_TOKEN)
    learned = session.learned_window  # what the provider said, when it refused a prompt
    return min(window, learned) if learned else window


def over_threshold(session: RLMSession, messages: list[Message]) -> bool:
    """Whether ``messages`` pass the compaction threshold of the root's window."""
    limit = session.config.history.compaction_threshold * root_window(session)
    return estimate_tokens(messages) > limit


def compactable(session: RLMSession) -> int:
    """How many iterations a compaction would fold in now (0: nothing to compact)."""
    st = session.state
    done = int(st.compaction["upto"]) if st.compaction else 0
    keep = session.config.history.keep_last_iterations
    return max(0, st.iteration - keep - done)


async def compact(session: RLMSession, *, aggressive: bool = False) -> bool:
    """Fold the older iterations into a summary. Returns False when nothing could be
    folded (the prompt is as small as compaction can make it).

    The root writes the summary (one root call, within the budget); if that call fails
    or does not fit either, a mechanical digest of the iterations is used instead.
    ``aggressive`` (after a context-length error) keeps no iteration verbatim.
    """
    st = session.state
    previous = Compaction.from_dict(st.compaction) if st.compaction else None
    keep = 0 if aggressive else session.config.history.keep_last_iterations
    upto = st.iteration - keep
    if upto <= (previous.upto if previous else 0):
        return False
    folded = st.iterations[:upto]
    room = int(_SUMMARY_SHARE * root_window(session) * CHARS_PER_TOKEN)
    summary = await _root_summary(session, upto, previous)
    kind = "summary"
    if summary is None:
        summary, kind = digest(folded, previous), "digest"
    if len(summary) > room:  # keep the newest part: it holds the latest values and step
        summary = "[... earlier part of the summary cut to fit the window ...]\n" + summary[-room:]
    st.compaction = Compaction(upto, summary, kind).to_dict()
    await _store_history(session, folded)
    session.shared.emit(
        "compaction", depth=session.depth, iteration=st.iteration, upto=upto, kind=kind
    )
    return True


async def _root_summary(session: RLMSession, upto: int, previous: Compaction | None) -> str | None:
    """The root's own summary of iterations 1..upto, or None if it cannot give one."""
    st, budget = session.state, session.shared.budget
    msgs = history_messages(st.system, st.first_user, st.iterations[:upto], previous)
    append_user(msgs, COMPACTION_REQUEST)  # after the last feedback: one user turn
    if estimate_tokens(msgs) > root_window(session):
        return None  # the request itself would not fit
    if budget.timed_out() or budget.reserve() is not None:
        return None
    try:
        resp = await session.root_client.acomplete(
            msgs,
            model=session.root_model,
            timeout=budget.clamp(session.config.reply.timeout),
        )
    except Exception:
        return None
    session.record_usage(resp, role="root")
    text = resp.text.strip()
    return text or None


async def call_root(session: RLMSession) -> LMResponse:
    """The root LM call of one iteration, kept inside the root's window.

    Compacts first when the prompt passes the threshold; when the provider still answers
    that the prompt is too long (an estimate is only an estimate), compacts harder and
    retries once. Any other failure is raised as it came.
    """
    if session.root_client.builds_own_prompt:  # its prompt is not this history
        return await session.root_client.acomplete(
            session.state.messages(),
            model=session.root_model,
            timeout=session.shared.budget.clamp(session.config.reply.timeout),
        )
    if over_threshold(session, session.state.messages()) and compactable(session):
        await compact(session)
    for attempt in range(_OVERFLOW_RETRIES + 1):
        messages = session.state.messages()
        try:
            return await session.root_client.acomplete(
                messages,
                model=session.root_model,
                timeout=session.shared.budget.clamp(session.config.reply.timeout),
            )
        except Exception as e:
            if attempt == _OVERFLOW_RETRIES or not is_context_overflow(e):
                raise
            # The estimate was wrong: believe the provider from now on.
            stated = window_from_error(e)
            session.learned_window = stated or int(estimate_tokens(messages) * 0.8)
            session.shared.emit(
                "context_overflow", depth=session.depth, window=session.learned_window
            )
            if not await compact(session, aggressive=True):
                raise
    raise AssertionError("unreachable")


def digest(iterations: list[Iteration], previous: Compaction | None) -> str:
    """A summary without an LM call: each iteration's code and the head of its output."""
    lines: list[str] = []
    if previous is not None:
        lines.append(previous.summary)
    start = previous.upto if previous else 0
    for it in iterations[start:]:
        lines.append(f"Iteration {it.index}:")
        for block in it.code_blocks:
            lines.append("```repl\n" + _clip(block.code) + "\n```")
            out = block.stdout or block.error or "(no output)"
            lines.append("Output: " + _clip(out))
    return "\n".join(lines)


def _clip(text: str) -> str:
    text = text.strip()
    if len(text) <= _DIGEST_KEEP:
        return text
    return f"{text[: _DIGEST_KEEP // 2]}\n[...]\n{text[-_DIGEST_KEEP // 2 :]}"


async def _store_history(session: RLMSession, folded: list[Iteration]) -> None:
    """Put the compacted iterations in the REPL, so code can still read them."""
    turns = [
        {
            "iteration": it.index,
            "response": it.response,
            "code": [b.code for b in it.code_blocks],
            "output": [b.stdout for b in it.code_blocks],
        }
        for it in folded
    ]
    payload = json.dumps(turns)
    code = f"import json as _json\n{HISTORY_VARIABLE} = _json.loads({payload!r})\ndel _json"
    try:
        await session.env.execute(code, timeout=session.shared.budget.clamp(60.0))
    except Exception:  # the summary is in the prompt either way
        return


__all__ = [
    "HISTORY_VARIABLE",
    "Compaction",
    "call_root",
    "compact",
    "compactable",
    "digest",
    "history_messages",
    "over_threshold",
    "root_window",
]
