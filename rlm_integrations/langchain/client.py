"""Engine backend adapter: any LangChain chat model as the RLM's root or sub LM.

:func:`register` tells the engine about it (``rlm_engine.clients.register_backend`` /
``register_adapter``): importing this module registers it, and so does the
``rlm_engine.clients`` entry point declared in ``pyproject.toml``, which the engine loads
the first time it meets a model object it does not know. So ``RLM(backend=ChatOpenAI())``
works without importing this package first, and every provider LangChain supports can
drive an RLM. The engine speaks plain ``{"role", "content"}``
messages; this module converts them, calls ``ainvoke`` and reads token usage from
``AIMessage.usage_metadata`` so the engine's usage ledger stays exact.

Inner calls are tagged ``nostream`` (LangGraph's opt-out tag): when an RLM runs inside a
graph streamed with ``stream_mode="messages"``, the root's code-writing turns and the
sub-calls must not appear as the node's chat tokens; only the RLM's final answer should.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.callbacks import BaseCallbackManager, Callbacks
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableBinding, RunnableConfig

from rlm_engine.clients import register_adapter, register_backend
from rlm_engine.clients.base import (
    LMClient,
    alternate_roles,
    cache_rates_for,
    compute_cost,
    price_for,
)
from rlm_engine.clients.deadline import within_deadline
from rlm_engine.types import LMResponse, Message

NOSTREAM_TAG = "nostream"  # langgraph.constants.TAG_NOSTREAM, without importing langgraph
_MODEL_FIELDS = ("model_name", "model", "model_id", "deployment_name", "repo_id")


def model_name_of(chat_model: Any) -> str:
    """The model identifier a chat model reports, else its ``_llm_type``.

    ``_llm_type`` is the property every ``BaseChatModel`` implements to name its kind (it
    is protected, not private: subclasses must define it); it is read with ``getattr``
    so a model without it falls back to its class name.
    """
    for attr in _MODEL_FIELDS:
        value = getattr(chat_model, attr, None)
        if isinstance(value, str) and value:
            return value
    return str(getattr(chat_model, "_llm_type", type(chat_model).__name__))


def is_chat_model(obj: object) -> bool:
    """Whether ``obj`` is a LangChain chat model, or one bound with ``.bind(...)``."""
    if isinstance(obj, RunnableBinding):
        obj = obj.bound
    return isinstance(obj, BaseChatModel)


def to_langchain_messages(messages: Sequence[Message]) -> list[BaseMessage]:
    """Engine messages (role/content dicts) as LangChain message objects."""
    out: list[BaseMessage] = []
    for m in messages:
        role, content = m.get("role"), m.get("content") or ""
        if role in ("system", "developer"):
            out.append(SystemMessage(content=content))
        elif role == "assistant":
            out.append(AIMessage(content=content))
        elif role == "user":
            out.append(HumanMessage(content=content))
        else:
            raise ValueError(f"LangChainClient cannot send a message with role {role!r}")
    return out


class LangChainClient(LMClient):
    """``LMClient`` over a LangChain ``BaseChatModel``.

    Args:
        chat_model: the model to call (``ChatOpenAI``, ``ChatAnthropic``, ...).
        model_name: the model to call instead of the chat model's own (a copy with its
            model field set, see :func:`with_model`); ``None`` or ``"auto"`` keeps it.
            This is how an engine ``backend_kwargs={"model_name": ...}`` reaches it.
        models: extra chat models by name, used when REPL code asks for
            ``llm_query(..., model=name)``; unknown names fall back to a copy of
            ``chat_model`` with its model field set to that name.
        pricing: ``(input, output)`` USD per 1M tokens when the model's price is not known.
        context_chars: characters the model reads at once; default from the model's
            ``profile["max_input_tokens"]`` (4 characters per token), else 400,000.
        callbacks: callbacks for the inner calls (e.g. a parent run's child manager, so
            traces nest); tags and metadata are added to every call.
        stream_tokens: ``True`` drops the ``nostream`` tag, letting a LangGraph
            ``messages`` stream show the inner calls' tokens.
    """

    def __init__(
        self,
        chat_model: BaseChatModel,
        *,
        model_name: str | None = None,
        models: Mapping[str, BaseChatModel] | None = None,
        pricing: Any = None,
        context_chars: int | None = None,
        callbacks: Callbacks = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        stream_tokens: bool = False,
        **invoke_kwargs: Any,
    ) -> None:
        if not is_chat_model(chat_model):
            raise TypeError(
                f"LangChainClient needs a LangChain chat model (BaseChatModel), got {chat_model!r}"
            )
        if model_name and model_name not in ("auto", model_name_of(chat_model)):
            chat_model = with_model(chat_model, model_name)
        self.chat_model = chat_model
        self.model_name = model_name_of(chat_model)
        self._models: dict[str, BaseChatModel] = dict(models or {})
        self._pricing = pricing
        self.context_chars = context_chars or _profile_chars(chat_model) or self.context_chars
        self.callbacks = callbacks
        self.tags = list(tags or [])
        if not stream_tokens and NOSTREAM_TAG not in self.tags:
            self.tags.append(NOSTREAM_TAG)
        self.metadata = dict(metadata or {})
        self.invoke_kwargs = invoke_kwargs

    def _model_for(self, model: str | None) -> tuple[BaseChatModel, str]:
        if not model or model == self.model_name:
            return self.chat_model, self.model_name
        if model not in self._models:
            self._models[model] = with_model(self.chat_model, model)
        return self._models[model], model

    def _config(self, model: str) -> RunnableConfig:
        callbacks = self.callbacks
        if isinstance(callbacks, BaseCallbackManager):
            callbacks = callbacks.copy()  # a manager is mutated by each run; share none
        return RunnableConfig(
            callbacks=callbacks,
            tags=list(self.tags),
            metadata={**self.metadata, "rlm_model": model},
            run_name=f"rlm:{model}",
        )

    async def acomplete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        chat_model, name = self._model_for(model)
        # Strict chat templates refuse two messages of one role in a row: merge them.
        lc_messages = to_langchain_messages(alternate_roles(messages))
        # The engine passes its per-request bound (default 300 s): a total deadline, since
        # the chat model's own HTTP timeout restarts on every byte a slow server sends.
        reply = await within_deadline(
            chat_model.ainvoke(lc_messages, config=self._config(name), **self.invoke_kwargs),
            timeout,
            f"{type(chat_model).__name__} ({name})",
        )
        return self._to_response(reply, name)

    def _to_response(self, reply: BaseMessage, name: str) -> LMResponse:
        usage = getattr(reply, "usage_metadata", None) or {}
        inp = int(usage.get("input_tokens") or 0)
        out = int(usage.get("output_tokens") or 0)
        details = usage.get("input_token_details") or {}  # ChatOpenAI / ChatAnthropic caching
        read = int(details.get("cache_read") or 0)
        written = int(details.get("cache_creation") or 0)
        meta = reply.response_metadata or {}
        reported = meta.get("model_name") or meta.get("model")
        model = reported if isinstance(reported, str) and reported else name
        prices, rates = price_for(model, self._pricing), cache_rates_for(model)
        return LMResponse(
            text=reply.text,
            model=model,
            input_tokens=inp,
            output_tokens=out,
            cost=compute_cost(prices, inp, out, read, written, rates),
            cached_input_tokens=read,
            cache_write_tokens=written,
            truncated=is_truncated(meta),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "client": "langchain",
            "chat_model": type(self.chat_model).__name__,
            "model": self.model_name,
        }


#: How chat models say a reply stopped at its cap, by ``response_metadata`` key: OpenAI
#: (``finish_reason``), Anthropic (``stop_reason``), Gemini (``finish_reason``, upper
#: case), Ollama (``done_reason``).
_TRUNCATED = {
    "finish_reason": ("length", "max_tokens"),
    "stop_reason": ("max_tokens",),
    "done_reason": ("length",),
}


def is_truncated(response_metadata: Mapping[str, Any]) -> bool:
    """Whether a chat model's reply was cut at its reply cap."""
    return any(
        str(response_metadata.get(key) or "").lower() in values
        for key, values in _TRUNCATED.items()
    )


def with_model(chat_model: BaseChatModel, model: str) -> BaseChatModel:
    """A copy of ``chat_model`` calling ``model``: set whichever model field it has."""
    fields = type(chat_model).model_fields
    for attr in _MODEL_FIELDS:
        if attr in fields and isinstance(getattr(chat_model, attr, None), str):
            return chat_model.model_copy(update={attr: model})
    raise ValueError(
        f"Cannot switch {type(chat_model).__name__} to model {model!r}: it has no model "
        "field. Pass LangChainClient(..., models={name: chat_model}) for named sub-models."
    )


def _profile_chars(chat_model: Any) -> int | None:
    profile = getattr(chat_model, "profile", None)
    if isinstance(profile, Mapping) and profile.get("max_input_tokens"):
        return int(profile["max_input_tokens"]) * 4
    return None


def register() -> None:
    """Register ``LangChainClient`` with the engine: the backend name ``"langchain"``
    (``make_client("langchain", {"chat_model": m})``) and an adapter for chat models
    (``make_client(m)``). Runs when this module is imported; it is also the target of the
    ``rlm_engine.clients`` entry point. Registering again is harmless."""
    register_backend("langchain", LangChainClient)
    register_adapter(
        "langchain",
        is_chat_model,
        LangChainClient,
        description="a LangChain chat model (BaseChatModel)",
    )


register()
