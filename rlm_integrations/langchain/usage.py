"""Who reports which tokens to LangChain: each LM call once, under its own model.

LangChain's token accounting (``get_usage_metadata_callback``, LangSmith, cost tools) sums
the ``usage_metadata`` of every chat-model run's ``on_llm_end``, keyed by that message's
``response_metadata["model_name"]``. An RLM call makes many LM calls, to up to two
models, so the rule is:

- **every LM call that is not a root turn of the top-level RLM is its own nested
  chat-model run.** A LangChain ``llm``/``sub_llm`` reports its runs itself (LangChain
  does it for every model call); the engine's own sub client is wrapped in
  :class:`NestedRunClient`, which reports each of its calls the same way: a child run of
  the RLM call, named ``rlm:<model>``, with the call's ``usage_metadata`` and
  ``model_name``.
- **the RLM's own ``AIMessage.usage_metadata`` counts only what no nested run reported**:
  the root turns made by the engine's own root client (:func:`unreported_usage`); with a
  LangChain ``llm`` as root that is nothing.

So every token is counted once, under the name of the model that produced it, and a
tracer prices each model at its own rate. The whole run's totals stay in
``response_metadata["usage"]`` (``total``, ``root``, ``sub``, ``by_model``).
"""

from __future__ import annotations

import contextlib
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, LLMResult

from rlm_engine.clients import LMClient
from rlm_engine.types import LMResponse, Message
from rlm_engine.usage import Usage
from rlm_integrations.langchain.client import (
    NOSTREAM_TAG,
    LangChainClient,
    to_langchain_messages,
)
from rlm_integrations.langchain.progress import RunTarget


def reports_itself(client: LMClient) -> bool:
    """Whether ``client``'s calls already are LangChain runs (a LangChain chat model)."""
    return isinstance(client, LangChainClient)


class NestedRunClient(LMClient):
    """An engine client whose every call is reported as a child chat-model run.

    Wraps the engine's sub client for one RLM call: sub-calls, and the root turns of child
    RLMs, then appear in traces and usage callbacks as their own runs under their own
    model, like a LangChain ``sub_llm``'s would. ``owns_inner`` is false when the
    wrapped client is also the root client, which closes it.
    """

    def __init__(self, inner: LMClient, target: RunTarget | None, *, owns_inner: bool) -> None:
        self.inner = inner
        self.target = target
        self.owns_inner = owns_inner
        self.model_name = inner.model_name
        self.context_chars = inner.context_chars

    async def acomplete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        if self.target is None:
            return await self.inner.acomplete(messages, model=model, timeout=timeout)
        name = model or self.model_name
        manager = self.target.child_manager()
        manager.add_tags([NOSTREAM_TAG])  # a graph's "messages" stream shows the answer only
        manager.add_metadata(
            {"ls_provider": "rlm", "ls_model_name": name, "ls_model_type": "chat"},
            inherit=False,
        )
        (run,) = await manager.on_chat_model_start(
            {"lc": 1, "type": "not_implemented", "id": ["rlm_engine", type(self.inner).__name__]},
            [to_langchain_messages(messages)],
            invocation_params={"model": name, "_type": "rlm-engine-client"},
            name=f"rlm:{name}",
            batch_size=1,
        )
        try:
            resp = await self.inner.acomplete(messages, model=model, timeout=timeout)
        except BaseException as e:
            with contextlib.suppress(Exception):  # a broken handler must not hide the error
                await run.on_llm_error(e)
            raise
        await run.on_llm_end(LLMResult(generations=[[ChatGeneration(message=_message(resp))]]))
        return resp

    async def aclose(self) -> None:
        if self.owns_inner:
            await self.inner.aclose()

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


def usage_metadata(inp: int, out: int, cache_read: int = 0, cache_write: int = 0) -> UsageMetadata:
    """LangChain's usage record; prompt-cache tokens go in ``input_token_details``
    (``cache_read``/``cache_creation``), as ChatOpenAI and ChatAnthropic report them."""
    meta = UsageMetadata(input_tokens=inp, output_tokens=out, total_tokens=inp + out)
    if cache_read or cache_write:
        meta["input_token_details"] = {"cache_read": cache_read, "cache_creation": cache_write}
    return meta


def _message(resp: LMResponse) -> AIMessage:
    return AIMessage(
        content=resp.text,
        usage_metadata=usage_metadata(
            resp.input_tokens,
            resp.output_tokens,
            resp.cached_input_tokens,
            resp.cache_write_tokens,
        ),
        response_metadata={"model_name": resp.model, "model_provider": "rlm"},
    )


def reporting_clients(
    root: LMClient, sub: LMClient, target: RunTarget | None
) -> tuple[LMClient, LMClient]:
    """The clients of one RLM call, the engine's sub client wrapped to report its calls."""
    if reports_itself(sub):
        return root, sub
    return root, NestedRunClient(sub, target, owns_inner=sub is not root)


def unreported_usage(usage: Usage, root: LMClient) -> UsageMetadata:
    """What the RLM message itself reports: the top-level root turns of an engine client
    (every other call was its own nested run)."""
    if reports_itself(root):
        return usage_metadata(0, 0)
    t = usage.root
    return usage_metadata(
        t.input_tokens, t.output_tokens, t.cached_input_tokens, t.cache_write_tokens
    )


def root_model_name(usage: Usage, default: str) -> str:
    """The model the provider says answered the root turns (as ``ChatOpenAI`` reports
    ``model_name``), when it is one model; else ``default``."""
    names = {r.model for r in list(usage.records) if r.role == "root" and r.depth == 0}
    return names.pop() if len(names) == 1 else default


__all__ = [
    "NestedRunClient",
    "reporting_clients",
    "reports_itself",
    "root_model_name",
    "unreported_usage",
]
