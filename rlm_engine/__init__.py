"""Recursive Language Models: answer queries over contexts far larger than a model window."""

from rlm_engine.config import (
    History,
    Models,
    Observability,
    Repl,
    ReplyLimits,
    RLMConfig,
    RunLimits,
)
from rlm_engine.conversation import Conversation
from rlm_engine.environments import Environment, HostFunction
from rlm_engine.logger import RLMLogger
from rlm_engine.resources import RunResources
from rlm_engine.rlm import RLM
from rlm_engine.session import RLMResult, RLMSession, RLMState, run
from rlm_engine.types import CodeBlockResult, Iteration, LMResponse, SubCall
from rlm_engine.usage import Usage, UsageTotals

__all__ = [
    "RLM",
    "CodeBlockResult",
    "Conversation",
    "Environment",
    "History",
    "HostFunction",
    "Iteration",
    "LMResponse",
    "Models",
    "Observability",
    "RLMConfig",
    "Repl",
    "ReplyLimits",
    "RunLimits",
    "RunResources",
    "RLMLogger",
    "RLMResult",
    "RLMSession",
    "RLMState",
    "Usage",
    "UsageTotals",
    "SubCall",
    "run",
]
