"""The paper authors' library (``from rlm import RLM``) on this engine.

Change ``from rlm ...`` to ``from rlm_engine.compat.rlm ...`` in the import lines:
``RLM`` and ``RLMLogger`` (also ``rlm_engine.compat.rlm.logger``), the limit errors, and
``RLM_REPL`` of the minimal ``rlm_repl`` library (``rlm_engine.compat.rlm.rlm_repl``).
"""

from rlm_engine.compat.rlm.core.rlm import RLM
from rlm_engine.compat.rlm.logger import RLMLogger
from rlm_engine.compat.rlm.options import UnsupportedOptionError
from rlm_engine.compat.rlm.results import (
    BudgetExceededError,
    CallLimitExceededError,
    CancellationError,
    ErrorThresholdExceededError,
    ModelUsageSummary,
    RLMChatCompletion,
    RunFailedError,
    TimeoutExceededError,
    TokenLimitExceededError,
    UsageSummary,
)

__all__ = [
    "RLM",
    "BudgetExceededError",
    "CallLimitExceededError",
    "CancellationError",
    "ErrorThresholdExceededError",
    "ModelUsageSummary",
    "RLMChatCompletion",
    "RLMLogger",
    "RunFailedError",
    "TimeoutExceededError",
    "TokenLimitExceededError",
    "UnsupportedOptionError",
    "UsageSummary",
]
