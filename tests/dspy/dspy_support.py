"""Helpers shared by the DSPy tests (data builders, request capture)."""

from __future__ import annotations

from typing import Any

from rlm_engine.scripted import Request

NEEDLE_LINE = 600


def haystack(needle: str, lines: int = 800, at: int = NEEDLE_LINE) -> str:
    """About 40,000 characters of filler with ``needle`` on line ``at``."""
    rows = [f"Line {i}: the weather was calm and nothing happened." for i in range(lines)]
    rows.insert(at, needle)
    return "\n".join(rows)


def is_rlm_turn(req: Request) -> bool:
    """A DSPy request for an RLM root turn (ChatAdapter format)."""
    return "`repl_history`" in req.system and "[[ ## code ## ]]" in req.system


def chat_reply(**fields: str) -> str:
    """A ChatAdapter-formatted answer with these output fields."""
    parts = [f"[[ ## {k} ## ]]\n{v}" for k, v in fields.items()]
    return "\n\n".join([*parts, "[[ ## completed ## ]]"])


def vault_example(n: int) -> Any:
    """A long-context lookup: the code of vault ``n``, on line 600 of ~40,000 characters."""
    import dspy

    code = str(1000 + n * 37)
    return dspy.Example(
        document=haystack(f"The access code for vault {n} is {code}."),
        question=f"What is the access code for vault {n}?",
        answer=code,
    ).with_inputs("document", "question")


def exact_match(
    gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None
) -> float:
    """The metric every optimizer test uses (GEPA passes the two extra arguments)."""
    return float(str(pred.answer).strip() == gold.answer)


def score(program: Any, dataset: list[Any]) -> float:
    return sum(exact_match(ex, program(**ex.inputs())) for ex in dataset) / len(dataset)
