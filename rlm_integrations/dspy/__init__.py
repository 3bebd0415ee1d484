"""DSPy integration: ``RLMModule`` (an optimizable RLM program) and a ``CodeInterpreter``
adapter that runs ``dspy.RLM`` / ``CodeAct`` / ``ProgramOfThought`` code in our environments.
"""

from rlm_integrations.dspy.lm_client import DSPyLMClient
from rlm_integrations.dspy.module import RLMModule, RLMRunError
from rlm_integrations.dspy.outputs import SubmissionError

__all__ = ["DSPyLMClient", "RLMModule", "RLMRunError", "SubmissionError"]
