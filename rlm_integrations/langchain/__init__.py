"""LangChain integration: RLMs as chat models, and chat models as RLM backends."""

from rlm_integrations.langchain.client import LangChainClient
from rlm_integrations.langchain.scripted import ScriptedChatModel

__all__ = ["LangChainClient", "ScriptedChatModel"]
