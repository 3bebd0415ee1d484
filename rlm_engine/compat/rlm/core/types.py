"""The seed library's ``rlm.core.types`` names, for annotations in migrated code."""

from rlm_engine.compat.rlm.results import ModelUsageSummary, RLMChatCompletion, UsageSummary

__all__ = ["ModelUsageSummary", "RLMChatCompletion", "UsageSummary"]
