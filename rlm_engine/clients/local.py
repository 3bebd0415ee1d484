"""``backend="vllm"`` and ``backend="llamacpp"``: the OpenAI-compatible client for local servers.

Both are :class:`~rlm_engine.clients.openai.OpenAIClient` with what these servers need:

- the model's window is read from the server once (vLLM lists ``max_model_len`` at
  ``/v1/models``; llama.cpp reports ``n_ctx`` and its chat template at ``/props``), the
  reply cap is lowered to the room each prompt leaves, and the root is told what a sub-call
  really holds;
- without a model name, the first model the server lists is used (llama.cpp lists the
  GGUF file's path as its id, which works as a name like any other);
- a chat template without a system role (Gemma on llama.cpp) gets the system prompt as the
  first user turn;
- servers that send no usage get an estimate marked ``usage_estimated``, a reply cut at the
  cap or the window is ``truncated``, and their context-length errors are recognised
  (``rlm_engine.windows``).

The base URL defaults like the ``openai`` backend's (``RLM_API_URL``, ``OPENAI_BASE_URL``,
else ``http://localhost:8080/v1``, llama.cpp's port; vLLM serves on 8000 by default).
"""

from __future__ import annotations

from rlm_engine.clients.openai import OpenAIClient


class VLLMClient(OpenAIClient):
    """A vLLM server (``vllm serve MODEL``; ``--max-model-len`` is the window read here)."""

    discovers_window = True

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "client": "vllm"}


class LlamaCppClient(OpenAIClient):
    """A llama.cpp server (``llama-server -m model.gguf -c N``; ``N`` is read at ``/props``)."""

    discovers_window = True

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "client": "llamacpp"}


__all__ = ["LlamaCppClient", "VLLMClient"]
