"""The engine's input boundary: what a completion is handed, made ready or refused.

Every way into a run (``RLM.completion``, the LangChain chat model, the LangGraph nodes,
the DSPy module, a child RLM) opens an ``RLMSession``, and ``RLMSession.open`` passes the
context and query through :func:`prepare_input` first. So one rule holds everywhere: the
text is normalized (:mod:`rlm_engine.text`) before any environment, prompt or logger sees
it, and a request with nothing to work on fails before it pays for a single LM call.
"""

from __future__ import annotations

from typing import Any

from rlm_engine.text import clean_text, clean_value, is_blank


class EmptyInputError(ValueError):
    """A completion was asked with an empty context and no query: nothing to work on."""


def prepare_input(
    context: Any, query: str | None, *, require_material: bool = True
) -> tuple[Any, str | None]:
    """The context and query a session works on.

    Every ``str`` is made plain and UTF-8-safe (:func:`~rlm_engine.text.clean_value`). A
    blank query (empty or whitespace) becomes ``None``: the task is then read from the
    context. When ``require_material`` and both the context and the query are blank
    (see :func:`~rlm_engine.text.is_blank`), raises :class:`EmptyInputError`. An empty
    context with a real query is a direct question and is accepted.
    """
    context = clean_value(context)
    if isinstance(query, str):
        query = clean_text(query)
        if not query or query.isspace():
            query = None
    if require_material:
        check_material(context, query)
    return context, query


def check_material(context: Any, query: str | None) -> None:
    """Raise :class:`EmptyInputError` when both ``context`` and ``query`` are blank.

    Cheap (it stops at the first non-blank character), so entry points call it before
    they build clients, as well as :func:`prepare_input` does.
    """
    if (query is None or is_blank(query)) and is_blank(context):
        raise EmptyInputError(
            f"Nothing to work on: the context is {_describe(context)} and there is no "
            "query. Pass the material as the context, a question as the query, or both; "
            "with neither, the LM calls could only answer that nothing was asked."
        )


def _describe(context: Any) -> str:
    if context is None:
        return "None"
    kind = type(context).__name__
    if isinstance(context, str):
        return f"an empty {kind}" if not context else f"a {kind} of only whitespace"
    if not context:
        return f"an empty {kind}"
    return f"a {kind} of {len(context)} empty item(s)"


__all__ = ["EmptyInputError", "check_material", "prepare_input"]
