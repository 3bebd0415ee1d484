"""LangChain integration: RLMs as chat models, and chat models as RLM backends.

- :class:`RLMChatModel`: a Recursive Language Model usable wherever a LangChain chat
  model goes (chains, ``batch``, streaming, structured output, tools, agents).
- :class:`LangChainClient`: the engine backend that lets any LangChain chat model be an
  RLM's root or sub LM. Importing this package registers it with the engine (backend
  name ``"langchain"`` and an adapter for chat models); the engine also finds it through
  the ``rlm_engine.clients`` entry point, so ``RLM(backend=chat_model)`` needs no import.
- :class:`ScriptedChatModel`: the offline scripted model as a chat model, for demos and
  tests without an API key.
"""

from rlm_engine.inputs import EmptyInputError
from rlm_integrations.langchain.chat_model import RLMChatModel
from rlm_integrations.langchain.client import LangChainClient
from rlm_integrations.langchain.outcome import RLMError, RLMNoAnswerError, RLMTimeoutError
from rlm_integrations.langchain.scripted import ScriptedChatModel

__all__ = [
    "EmptyInputError",
    "LangChainClient",
    "RLMChatModel",
    "RLMError",
    "RLMNoAnswerError",
    "RLMTimeoutError",
    "ScriptedChatModel",
]
