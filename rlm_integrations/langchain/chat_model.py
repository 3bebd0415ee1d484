"""``RLMChatModel``: a Recursive Language Model behind LangChain's chat-model interface.

Every call is one RLM completion run by the engine's step functions
(``RLMSession`` + ``rlm_engine.session.run``): the conversation is split into a REPL
``context`` and a short query (:mod:`.messages`), the root LM works on the context with
code and sub-calls, and its ``FINAL`` answer becomes the ``AIMessage``. Streaming yields
that answer in chunks once the run has finished; the run's progress is visible earlier
through callbacks (:mod:`.progress`).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextvars import ContextVar
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableLambda,
    RunnableMap,
    RunnablePassthrough,
    ensure_config,
)
from langchain_core.utils import secret_from_env
from pydantic import ConfigDict, Field, SecretStr

from rlm_engine.aio import run_sync
from rlm_engine.clients import LMClient, make_client
from rlm_engine.environments import HostFunction
from rlm_engine.session import RLMConfig, RLMSession, Shared, run
from rlm_integrations.langchain.client import LangChainClient, _with_model, model_name_of
from rlm_integrations.langchain.messages import split_messages
from rlm_integrations.langchain.outcome import (
    answer_problem,
    continue_with,
    message_chunks,
    to_message,
)
from rlm_integrations.langchain.progress import (
    AsyncProgress,
    RunTarget,
    SyncProgress,
    stream_writer,
)
from rlm_integrations.langchain.structured import OutputSchema, structured_parser
from rlm_integrations.langchain.tools import (
    ToolCallRequests,
    ToolsMode,
    normalize_tool_choice,
    repl_tools,
    tool_spec,
)

OPENAI_URL = "https://api.openai.com/v1"
TASK_IN_CONTEXT = "The task is stated inside the context; find it and complete it."
_CALL_KWARGS = {"context", "model", "tools", "tool_choice", "response_format", "repl_tools"}
_IGNORED_KWARGS = {"stream", "strict", "parallel_tool_calls"}

# The run id and config of the current public call, for ``_stream``/``_astream``, which
# LangChain calls without a run manager; progress events need the run they belong to.
_CALL: ContextVar[tuple[RunnableConfig, uuid.UUID] | None] = ContextVar(
    "rlm_langchain_call", default=None
)


class RLMChatModel(BaseChatModel):
    """A Recursive Language Model as a LangChain chat model.

    The root LM never reads the long material: it lives in a Python REPL as ``context``
    and the root works on it with code, ``llm_query`` sub-calls and, with
    ``max_depth > 1``, child RLMs.

    Messages map to one RLM call as follows (details in
    :mod:`rlm_integrations.langchain.messages`): the last human message is the query
    (short system messages are added to it as instructions; tool calls and tool results
    since that message are shown with it); earlier messages, long system messages and
    the ``context`` (constructor field, or per call: ``invoke(msgs, context=doc)``)
    become the REPL ``context``.

    Root and sub LMs: the engine's own clients (``backend`` "openai" / "anthropic" /
    "scripted" with ``model``, ``base_url``, ``api_key``), or any LangChain chat models
    via ``llm`` / ``sub_llm``. ``temperature`` and ``max_tokens`` (a cap on each LM
    response, code-writing turns included) apply to the engine clients; a LangChain
    ``llm`` keeps its own settings. ``timeout`` is per LM request; ``run_timeout``,
    ``max_llm_calls``, ``max_total_tokens`` and ``max_cost`` bound the whole completion.

    Tools: ``bind_tools(tools, tool_choice=..., mode=...)``; ``mode="call"`` (default,
    see ``tools_mode``) returns ``AIMessage.tool_calls`` for the caller to run, as agents
    expect; ``mode="repl"`` runs the tools inside the RLM run as REPL functions.
    """

    model_name: str | None = Field(default=None, alias="model")
    """Root model name for the engine client (default: the backend's default)."""
    base_url: str | None = Field(default=None, alias="openai_api_base")
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env("OPENAI_API_KEY", default=None), alias="openai_api_key"
    )
    backend: Literal["openai", "anthropic", "scripted"] = "openai"
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, alias="max_completion_tokens")
    timeout: float | None = Field(default=None, alias="request_timeout")
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    max_retries: int = 2
    streaming: bool = False
    sub_model: str | None = None
    llm: BaseChatModel | None = None
    sub_llm: BaseChatModel | None = None
    backend_kwargs: dict[str, Any] | None = None
    sub_backend_kwargs: dict[str, Any] | None = None
    environment: str = "local"
    environment_kwargs: dict[str, Any] | None = None
    max_iterations: int = 30
    max_depth: int = 1
    max_concurrency: int = 16
    max_llm_calls: int | None = None
    max_total_tokens: int | None = None
    max_cost: float | None = None
    run_timeout: float | None = None
    context: Any = None
    tools_mode: ToolsMode = "call"
    max_output_retries: int = 2
    """Extra root turns to fix an answer that fails the schema or a required tool call."""
    max_query_chars: int = 4_000
    system_prompt: str | None = None
    logger: Any = Field(default=None, exclude=True)
    """An ``rlm_engine`` logger (e.g. ``RLMLogger``) that records every run's trajectory."""

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())

    # -- identity, tracing, serialization -----------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "rlm-chat"

    @property
    def _root_name(self) -> str:
        if self.llm is not None:
            return model_name_of(self.llm)
        return self.model_name or {"scripted": "scripted-root"}.get(self.backend, "auto")

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self._root_name,
            "sub_model": self.sub_model or (model_name_of(self.sub_llm) if self.sub_llm else None),
            "backend": "langchain" if self.llm is not None else self.backend,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "environment": self.environment,
            "max_iterations": self.max_iterations,
            "max_depth": self.max_depth,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "rlm"
        model = kwargs.get("model")
        params["ls_model_name"] = model if isinstance(model, str) and model else self._root_name
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        return ["rlm_integrations", "langchain", "chat_model"]

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": "OPENAI_API_KEY"}

    # -- public entry points: remember the run, for progress events ------------------------
    @staticmethod
    def _track(config: RunnableConfig | None) -> tuple[RunnableConfig, Any]:
        config = ensure_config(config)
        run_id = config.get("run_id") or uuid.uuid4()
        config["run_id"] = run_id
        return config, _CALL.set((dict(config), run_id))  # type: ignore[arg-type]

    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        config, token = self._track(config)
        try:
            return super().invoke(input, config, stop=stop, **kwargs)
        finally:
            _CALL.reset(token)

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        config, token = self._track(config)
        try:
            return await super().ainvoke(input, config, stop=stop, **kwargs)
        finally:
            _CALL.reset(token)

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        config, token = self._track(config)
        try:
            yield from super().stream(input, config, stop=stop, **kwargs)
        finally:
            _reset(token)

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        config, token = self._track(config)
        try:
            async for chunk in super().astream(input, config, stop=stop, **kwargs):
                yield chunk
        finally:
            _reset(token)

    def _target(self, run_manager: Any) -> RunTarget | None:
        if run_manager is not None:
            return RunTarget.from_manager(run_manager, run_manager.run_id)
        call = _CALL.get()
        if call is None:
            return None
        config, run_id = call
        manager = AsyncCallbackManager.configure(
            config.get("callbacks"),
            self.callbacks,
            self.verbose,
            config.get("tags"),
            self.tags,
            config.get("metadata"),
            self.metadata,
        )
        return RunTarget.from_manager(manager, run_id)

    # -- tools and structured output ------------------------------------------------------
    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: Any = None,
        mode: ToolsMode | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; ``mode`` (default ``tools_mode``) is ``"call"`` or ``"repl"``.

        ``"call"``: the RLM may end with tool calls (``AIMessage.tool_calls``) that the
        caller runs; ``tool_choice`` ("any"/"required"/a tool name) makes one mandatory.
        ``"repl"``: the tools run inside the RLM run, called from REPL code.
        """
        mode = mode or self.tools_mode
        if mode == "repl":
            if normalize_tool_choice(tool_choice, [tool_spec(t)["name"] for t in tools]):
                raise ValueError("tool_choice needs mode='call': REPL tools are never required.")
            repl_tools(tools)  # fail now, not at call time, on tools that cannot run
            return self.bind(repl_tools=list(tools), **kwargs)
        if mode != "call":
            raise ValueError(f"mode must be 'call' or 'repl', got {mode!r}")
        specs = [tool_spec(t) for t in tools]
        choice = normalize_tool_choice(tool_choice, [s["name"] for s in specs])
        return self.bind(
            tools=[{"type": "function", "function": s} for s in specs],
            tool_choice=choice,
            **kwargs,
        )

    def with_structured_output(
        self,
        schema: Any = None,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Answers validated against ``schema`` (pydantic, TypedDict or JSON schema).

        The RLM's final answer must be JSON valid for the schema; when it is not, the same
        run continues with the validation error as feedback (``max_output_retries``).
        ``method`` only changes the raw message: JSON content, or a tool call for
        ``"function_calling"``. ``strict`` is accepted for compatibility; validation is
        always enforced.
        """
        if kwargs:
            raise ValueError(f"Received unsupported arguments {kwargs}")
        out = OutputSchema.from_schema(schema, method)
        llm = self.bind(
            response_format=out.response_format(),
            ls_structured_output_format={
                "kwargs": {"method": method, "strict": strict},
                "schema": schema,
            },
        )
        parser = RunnableLambda(structured_parser(out), name="RLMStructuredOutputParser")
        if not include_raw:
            return llm | parser
        parser_assign = RunnablePassthrough.assign(
            parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
        )
        parser_none = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parser_assign.with_fallbacks(
            [parser_none], exception_key="parsing_error"
        )

    # -- one RLM run -------------------------------------------------------------------------
    def _clients(self, target: RunTarget | None) -> tuple[LMClient, LMClient]:
        callbacks = target.child_manager() if target is not None else None
        if self.llm is not None:
            root: LMClient = LangChainClient(self.llm, callbacks=callbacks)
        else:
            root = make_client(self.backend, self._engine_kwargs(self.model_name))
        if self.sub_llm is not None:
            sub: LMClient = LangChainClient(self.sub_llm, callbacks=callbacks)
        elif self.sub_model and self.llm is not None:
            sub = LangChainClient(_with_model(self.llm, self.sub_model), callbacks=callbacks)
        elif self.sub_model or self.sub_backend_kwargs:
            kwargs = self._engine_kwargs(self.sub_model or self.model_name)
            sub = make_client(self.backend, {**kwargs, **(self.sub_backend_kwargs or {})})
        else:
            sub = root
        return root, sub

    def _engine_kwargs(self, model: str | None) -> dict[str, Any]:
        kw: dict[str, Any] = {"model_name": model, "max_retries": self.max_retries}
        if self.base_url:
            kw["base_url"] = self.base_url
        elif (
            self.backend == "openai"
            and "api_key" in self.model_fields_set
            and not any(os.environ.get(v) for v in ("RLM_API_URL", "OPENAI_BASE_URL"))
        ):
            # An explicit key means OpenAI, as for ChatOpenAI; the engine's default without
            # an OPENAI_API_KEY variable is a local server.
            kw["base_url"] = OPENAI_URL
        if self.api_key is not None and (
            self.backend == "openai" or "api_key" in self.model_fields_set
        ):
            kw["api_key"] = self.api_key.get_secret_value()
        if self.timeout is not None:
            kw["timeout"] = self.timeout
        if self.temperature is not None:
            kw["temperature"] = self.temperature
        if self.max_tokens is not None:
            kw["max_tokens"] = self.max_tokens
        return {**kw, **(self.backend_kwargs or {})}

    async def _arun(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
        target: RunTarget | None,
        progress_cls: type[AsyncProgress] | type[SyncProgress],
        writer: Callable[[Any], None] | None,
    ) -> AIMessage:
        unknown = set(kwargs) - _CALL_KWARGS - _IGNORED_KWARGS
        if unknown:
            raise TypeError(
                f"RLMChatModel got unexpected call arguments {sorted(unknown)}; "
                f"supported: {sorted(_CALL_KWARGS)}"
            )
        context = kwargs.get("context", self.context)
        rlm_in = split_messages(messages, context, max_query_chars=self.max_query_chars)
        query = rlm_in.query
        fns: dict[str, HostFunction] = {}
        docs: list[str] = []
        requests: ToolCallRequests | None = None
        if kwargs.get("tools"):
            specs = [t.get("function", t) for t in kwargs["tools"]]
            choice = normalize_tool_choice(kwargs.get("tool_choice"), [s["name"] for s in specs])
            requests = ToolCallRequests(specs, choice)
            fns[requests.host_function().name] = requests.host_function()
            docs.append(requests.doc())
        if kwargs.get("repl_tools"):
            tool_fns, doc = repl_tools(kwargs["repl_tools"])
            fns.update(tool_fns)
            docs.append(doc)
        schema = (
            OutputSchema.from_response_format(kwargs["response_format"])
            if kwargs.get("response_format")
            else None
        )
        if schema is not None:
            query = f"{query or TASK_IN_CONTEXT}\n\n{schema.instructions()}"

        root_client, sub_client = self._clients(target)
        config = RLMConfig(
            backend=root_client,
            sub_backend=sub_client,
            environment=self.environment,
            environment_kwargs=self.environment_kwargs,
            max_iterations=self.max_iterations,
            max_depth=self.max_depth,
            max_concurrency=self.max_concurrency,
            max_llm_calls=self.max_llm_calls,
            max_tokens=self.max_total_tokens,
            max_cost=self.max_cost,
            timeout=self.run_timeout,
            system_prompt=self.system_prompt,
            tools=fns,
            tools_doc="\n".join(docs),
        )
        root_model = kwargs.get("model")
        progress = progress_cls(target, writer)
        shared = Shared(
            config,
            root_client=root_client,
            sub_client=sub_client,
            logger=self.logger,
            on_event=progress,
        )
        try:
            session = await RLMSession.open(
                config, rlm_in.context, query, shared=shared, root_model=root_model
            )
            try:
                result = await run(session)
                for _ in range(self.max_output_retries):
                    problem = answer_problem(result, schema, requests)
                    if problem is None or not continue_with(session, problem):
                        break
                    result = await run(session)
            finally:
                await session.close()
        finally:
            try:
                await shared.aclose()
            finally:
                await progress.aclose()  # deliver every queued progress event
        stops = [*(self.stop or []), *(stop or [])]
        return to_message(result, root_model or root_client.model_name, schema, requests, stops)

    # -- BaseChatModel hooks ----------------------------------------------------------------
    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        msg = await self._arun(
            messages, stop, kwargs, self._target(run_manager), AsyncProgress, stream_writer()
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        msg = run_sync(
            self._arun(
                messages, stop, kwargs, self._target(run_manager), SyncProgress, stream_writer()
            )
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        target, writer = self._target(run_manager), stream_writer()
        msg = await self._arun(messages, stop, kwargs, target, AsyncProgress, writer)
        for chunk in message_chunks(msg):
            yield chunk

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        target, writer = self._target(run_manager), stream_writer()
        msg = run_sync(self._arun(messages, stop, kwargs, target, SyncProgress, writer))
        yield from message_chunks(msg)


def _reset(token: Any) -> None:
    # A generator closed from another context (e.g. garbage-collected) cannot reset.
    with contextlib.suppress(ValueError):
        _CALL.reset(token)
