"""The scripted model's skills for the integrations' prompt formats, on by default.

The built-in policies (:mod:`rlm_engine.scripted.policy`) answer the engine's own RLM
prompts. The integrations add wording of their own: RLMChatModel's ``CALL_TOOL`` tool
calling and JSON-schema answers, DSPy's adapter formats. A skill is a
``Request -> Reply | None`` callable (see :meth:`ScriptedModel.add_skill`).

Every new :class:`~rlm_engine.scripted.ScriptedModel` has the :func:`standard_skills`, so
``python -m rlm_engine.scripted.server``, ``ScriptedServer()`` and ``backend="scripted"``
drive LangChain tool calls, structured output and DSPy programs with no set-up::

    from rlm_engine.scripted import ScriptedServer

    with ScriptedServer() as server:
        ...  # RLMChatModel(base_url=server.base_url, ...), dspy.LM(..., api_base=server.base_url)

``ScriptedModel.bare()`` has none of them; each module's ``install(model)`` adds its skills
to such a model (and does nothing when the model already has them):

- :mod:`rlm_engine.scripted.skills.langchain`: tool calls and structured output of
  ``RLMChatModel`` (LangChain, LangGraph);
- :mod:`rlm_engine.scripted.skills.dspy`: DSPy's ChatAdapter / JSONAdapter requests,
  ``RLMModule`` and ``dspy.RLM`` turns, optimizers' instruction proposals.

They are test doubles for offline tests and examples, not models of real LLM behaviour.
They read the integrations' prompts with regular expressions and import neither the
integrations nor LangChain or DSPy (the engine never imports an integration); when that
wording changes, the skill stops answering, the model falls back to its default policy and
the integration tests that rely on the skill fail. Each skill answers only requests in its
own format, so having them all on never changes how the model answers anything else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rlm_engine.scripted.model import Skill

__all__ = ["standard_skills"]


def standard_skills() -> list[Skill]:
    """The skills every new ``ScriptedModel`` has, in the order they are tried."""
    from rlm_engine.scripted import direct_sim, eval_reader
    from rlm_engine.scripted.skills import dspy, langchain

    # rlm eval's suites: exact reading for the RLM arms, a simulated direct model.
    return [*langchain.SKILLS, *dspy.SKILLS, *eval_reader.SKILLS, *direct_sim.SKILLS]
