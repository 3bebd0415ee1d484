"""Opt-in skills that teach the offline scripted model the integrations' prompt formats.

The built-in policies (:mod:`rlm_engine.scripted.policy`) answer the engine's own RLM
prompts. The integrations add wording of their own: RLMChatModel's ``CALL_TOOL`` tool
calling and JSON-schema answers, DSPy's adapter formats. A skill is a
``Request -> Reply | None`` callable (see :meth:`ScriptedModel.add_skill`); each module
here has an ``install(model)`` that registers its skills and returns the model::

    from rlm_engine.scripted import ScriptedModel, ScriptedServer
    from rlm_engine.scripted.skills.langchain import install

    with ScriptedServer(install(ScriptedModel())) as server:
        ...  # point RLMChatModel(base_url=server.base_url, ...) at it

- :mod:`rlm_engine.scripted.skills.langchain`: tool calls and structured output of
  ``RLMChatModel`` (LangChain, LangGraph);
- :mod:`rlm_engine.scripted.skills.dspy`: DSPy's ChatAdapter / JSONAdapter requests,
  ``RLMModule`` and ``dspy.RLM`` turns, optimizers' instruction proposals.

They are test doubles for offline tests and examples, not models of real LLM behaviour.
They read the integrations' prompts with regular expressions and import neither the
integrations nor LangChain or DSPy (the engine never imports an integration); when that
wording changes, the skill stops answering, the model falls back to its default policy and
the integration tests that rely on the skill fail.
"""
