"""Mirror of the seed library's ``rlm.core`` package: ``rlm.core.rlm.RLM`` and
``rlm.core.types`` (``RLMChatCompletion``, ``UsageSummary``, ``ModelUsageSummary``)."""

from rlm_engine.compat.rlm.core.rlm import RLM

__all__ = ["RLM"]
