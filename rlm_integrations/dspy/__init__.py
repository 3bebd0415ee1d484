"""DSPy integration: ``RLMModule`` (an optimizable RLM program; ``module.conversation()``
gives an ``RLMConversation`` whose calls share one REPL) and a ``CodeInterpreter`` adapter
that runs ``dspy.RLM`` / ``CodeAct`` / ``ProgramOfThought`` code in our environments.
"""

try:
    import dspy  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "rlm_integrations.dspy needs DSPy: pip install 'rlm-integrations[dspy]'"
    ) from e

from rlm_integrations.dspy.conversation import RLMConversation
from rlm_integrations.dspy.interpreter import EngineInterpreter, EngineInterpreterFactory
from rlm_integrations.dspy.lm_client import DSPyLMClient
from rlm_integrations.dspy.module import RLMModule, RLMRunError
from rlm_integrations.dspy.outputs import SubmissionError

__all__ = [
    "DSPyLMClient",
    "EngineInterpreter",
    "EngineInterpreterFactory",
    "RLMConversation",
    "RLMModule",
    "RLMRunError",
    "SubmissionError",
]
