"""Human review of the root LM's code before it runs (``build_rlm_graph(review_code=True)``).

The ``execute`` node calls LangGraph's ``interrupt()`` with :func:`review_request`; the
person answers with ``Command(resume=...)`` and :func:`apply_review` turns the answer into
the response that really runs. The edited response is what the history records and what
the root LM sees in later turns, so the model learns what was actually executed.
"""

from __future__ import annotations

from typing import Any

from rlm_engine.parsing import find_code_blocks, strip_code_blocks

APPROVE_HINT = (
    "Resume with Command(resume=True) to run the code as is, "
    "Command(resume={'code': '...'}) to run other code instead, or "
    "Command(resume={'response': '...'}) to replace the whole response."
)


def review_request(response: str, iteration: int) -> dict[str, Any]:
    """The interrupt payload: the response, its code blocks and how to answer."""
    return {
        "kind": "rlm_code_review",
        "iteration": iteration,
        "response": response,
        "code": find_code_blocks(response),
        "how_to_resume": APPROVE_HINT,
    }


def with_code(response: str, code: str) -> str:
    """``response`` with all its code blocks replaced by one block holding ``code``.

    The prose and any FINAL / FINAL_VAR line stay: the engine runs the code first and then
    reads the FINAL line, so where the block sits in the text does not matter.
    """
    prose = strip_code_blocks(response).rstrip()
    block = f"```repl\n{code.rstrip()}\n```"
    return f"{prose}\n{block}" if prose else block


def apply_review(response: str, decision: Any) -> str:
    """The response to execute after a reviewer's ``decision`` (see ``APPROVE_HINT``)."""
    if decision is None or decision is True:
        return response
    if isinstance(decision, str):
        return with_code(response, decision)
    if isinstance(decision, dict):
        if decision.get("response") is not None:
            return str(decision["response"])
        if decision.get("code") is not None:
            return with_code(response, str(decision["code"]))
        if decision.get("approve", True) is True and not {"code", "response"} & set(decision):
            return response
    raise ValueError(f"Cannot apply review decision {decision!r}. {APPROVE_HINT}")
