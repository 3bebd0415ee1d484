"""Who reports which tokens to LangChain: each LM call once, under its own model.

LangChain's token accounting (``get_usage_metadata_callback``, LangSmith, cost tools) sums
the ``usage_metadata`` of every chat-model run's ``on_llm_end``, keyed by that message's
``response_metadata["model_name"]``. An RLM call makes many LM calls, to up to two
models. Each is its own run in the call's run tree
(:mod:`rlm_integrations.langchain.tracing`), with its own usage; a LangChain
``llm``/``sub_llm`` reports its runs itself. The RLM's own ``AIMessage.usage_metadata``
counts only what no run carried. The whole run's totals stay in
``response_metadata["usage"]`` (``total``, ``root``, ``sub``, ``by_model``).
"""

from __future__ import annotations

from rlm_engine.clients import LMClient
from rlm_engine.usage import Usage
from rlm_integrations.langchain.client import LangChainClient


def reports_itself(client: LMClient) -> bool:
    """Whether ``client``'s calls already are LangChain runs (a LangChain chat model)."""
    return isinstance(client, LangChainClient)


def root_model_name(usage: Usage, default: str) -> str:
    """The model the provider says answered the root turns (as ``ChatOpenAI`` reports
    ``model_name``), when it is one model; else ``default``."""
    names = {r.model for r in list(usage.records) if r.role == "root" and r.depth == 0}
    return names.pop() if len(names) == 1 else default


__all__ = ["reports_itself", "root_model_name"]
