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
from pydantic import ConfigDict, Field, SecretStr, model_validator

from rlm_engine import direct
from rlm_engine.aio import run_sync
from rlm_engine.clients import LMClient
from rlm_engine.clients.configured import make_clients
from rlm_engine.config import (
    DEFAULT_MAX_REPLY_TOKENS,
    DEFAULT_REQUEST_TIMEOUT,
    RLMConfig,
    make_config,
)
from rlm_engine.display import event_handler
from rlm_engine.resources import RunResources
from rlm_engine.session import RLMResult, RLMSession, run
from rlm_engine.trace_content import config_secrets
from rlm_integrations.langchain.client import model_name_of
from rlm_integrations.langchain.conversations import (
    STORE,
    Signature,
    Thread,
    fingerprint,
    signature,
)
from rlm_integrations.langchain.messages import MAX_INSTRUCTION_CHARS, message_text
from rlm_integrations.langchain.options import RLMEngineOptions, generated_options
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
from rlm_integrations.langchain.request import RLMRequest, context_fingerprint, rlm_request
from rlm_integrations.langchain.structured import OutputSchema, structured_parser
from rlm_integrations.langchain.tools import (
    ToolsMode,
    normalize_tool_choice,
    repl_tools,
    tool_spec,
)
from rlm_integrations.langchain.tracing import RunTree, following_manager
from rlm_integrations.langchain.usage import reports_itself, root_model_name

# The run id and config of the current public call, for ``_stream``/``_astream``, which
# LangChain calls without a run manager; progress events need the run they belong to.
_CALL: ContextVar[tuple[RunnableConfig, uuid.UUID] | None] = ContextVar(
    "rlm_langchain_call", default=None
)


class RLMChatModel(BaseChatModel, RLMEngineOptions):
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

    Tracing and usage (:mod:`rlm_integrations.langchain.tracing`): under this model's run,
    every root iteration is a chain run holding its root LM call (an ``llm`` run), its code
    cells (``tool`` runs) and their sub-calls (``llm`` runs) and child RLMs (chain runs),
    each LM call with its own ``usage_metadata`` and ``model_name`` (a LangChain
    ``llm``/``sub_llm`` reports its calls itself). The returned message's
    ``usage_metadata`` counts only what no run carried (a compaction summary, a call that
    failed before answering), so ``get_usage_metadata_callback()`` and LangSmith count
    each token once, under its model; ``response_metadata["usage"]`` has the whole run
    (``total``, ``root``, ``sub``, ``by_model``).

    Input and outcome: a call with no question and no context raises
    :class:`~rlm_integrations.langchain.request.EmptyInputError` before any LM call; a run
    that ends at a limit with no answer at all raises ``RLMTimeoutError`` (a
    ``TimeoutError``) or ``RLMNoAnswerError`` instead of returning ``''``. Engine options
    are validated at construction.
    """

    # LangChain's names and types for engine options (rlm_integrations.langchain.options);
    # every other engine option (max_iterations, environment, run_timeout, ...) is a field
    # generated from rlm_engine.config with the engine's default.
    model_name: str | None = Field(default=None, alias="model")
    """Root model name for the engine client (default: the backend's default)."""
    base_url: str | None = Field(default=None, alias="openai_api_base")
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env("OPENAI_API_KEY", default=None), alias="openai_api_key"
    )
    backend: str = "openai"
    """Engine backend by name (openai, anthropic, scripted, or a registered one)."""
    max_tokens: int | None = Field(default=DEFAULT_MAX_REPLY_TOKENS, alias="max_completion_tokens")
    """Cap on each LM reply (root turns and sub-calls); the run's: ``max_total_tokens``."""
    timeout: float | None = Field(default=DEFAULT_REQUEST_TIMEOUT, alias="request_timeout")
    """Seconds per LM request; the whole completion's: ``run_timeout``."""
    llm: BaseChatModel | None = None
    """A LangChain chat model as root LM, instead of ``backend``."""
    sub_llm: BaseChatModel | None = None
    """A LangChain chat model for sub-calls (default: the root LM)."""
    rlm_config: RLMConfig | None = Field(default=None, exclude=True)
    """A ready engine configuration; fields set explicitly on the chat model override it."""
    # Chat-model behaviour, not engine options.
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    streaming: bool = False
    context: Any = Field(default=None, exclude=True)
    """Material for every call (``invoke(..., context=...)`` overrides it). Kept out of
    ``dumpd`` and callback payloads (it may be megabytes); the cache key holds its hash."""
    tools_mode: ToolsMode = "call"
    max_output_retries: int = 2
    """Extra root turns to fix an answer that fails the schema or a required tool call."""
    max_query_chars: int = 4_000
    max_instruction_chars: int = MAX_INSTRUCTION_CHARS
    """System messages up to this length are instructions for the root; longer ones are
    material (``additional_kwargs={"rlm": "instructions"|"context"}`` on a message wins)."""
    conversations: bool = True
    """Continue a conversation when a call's messages extend an earlier call's messages
    and answer (same context, same ``configurable`` thread): the same REPL, its variables
    and material, instead of starting over (:mod:`.conversations`). Calls with bound tools
    always start fresh."""

    # extra="forbid": a misspelled option is an error, not a silently ignored keyword.
    model_config = ConfigDict(populate_by_name=True, protected_namespaces=(), extra="forbid")

    @model_validator(mode="after")
    def _validate_engine_options(self) -> RLMChatModel:
        """Build the engine configuration once, so a bad option (``max_iterations=0``, an
        unknown environment...) fails at construction, as a pydantic field error would,
        not at the first call."""
        self.engine_config()
        return self

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

    def _get_invocation_params(
        self, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        # Callbacks and tracers get these; a per-call context is described, not copied.
        if "context" in kwargs:
            kwargs["context"] = context_fingerprint(kwargs["context"])
        return super()._get_invocation_params(stop=stop, **kwargs)

    def _get_llm_string(self, stop: list[str] | None = None, **kwargs: Any) -> str:
        # The cache key: the context (per call, else the constructor's, which dumpd leaves
        # out) by its hash, so a different document is a different key at any size.
        kwargs["context"] = context_fingerprint(kwargs.get("context", self.context))
        return super()._get_llm_string(stop=stop, **kwargs)

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
    def engine_config(self) -> RLMConfig:
        """The engine configuration these fields describe (what every call runs with).

        The one place where LangChain's names map onto the engine's options: ``model`` is
        ``model``, ``llm``/``sub_llm`` are ``backend``/``sub_backend``, the secret
        ``api_key`` is revealed for the client. With ``rlm_config``, only fields set
        explicitly on the chat model change it.
        """
        given = self.model_fields_set
        explicit = self.rlm_config is not None
        opts: dict[str, Any] = {
            name: getattr(self, name)
            for name in generated_options()
            if not explicit or name in given
        }
        mapped = {
            "model": ("model_name", self.model_name),
            "base_url": ("base_url", self.base_url),
            "max_tokens": ("max_tokens", self.max_tokens),
            "timeout": ("timeout", self.timeout),
            "verbose": ("verbose", self.verbose),
        }
        for option, (field_name, value) in mapped.items():
            if not explicit or field_name in given:
                opts[option] = value
        if self.llm is not None:
            opts["backend"] = self.llm
        elif not explicit or "backend" in given:
            opts["backend"] = self.backend
        if self.sub_llm is not None:
            opts["sub_backend"] = self.sub_llm
        # The key defaults to OPENAI_API_KEY, which only the openai backend may read.
        if self.api_key is not None and (self.backend == "openai" or "api_key" in given):
            opts["api_key"] = self.api_key.get_secret_value()
        return make_config(self.rlm_config, **opts)

    def _call_config(self, target: RunTarget | None, request: RLMRequest) -> RLMConfig:
        """This call's configuration: the run's callbacks reach LangChain LMs (traces nest)
        and the call's tools join the REPL."""
        config = self.engine_config()
        changes: dict[str, Any] = {}
        if request.tools:
            changes["tools"] = {**config.repl.tools, **request.tools}
            changes["tools_doc"] = "\n".join(
                d for d in (config.repl.tools_doc, request.tools_doc) if d
            )
        # LangChain models' runs nest in the run tree's current step (.tracing).
        callbacks = following_manager(target) if target is not None else None
        m = config.models
        if callbacks is not None and not isinstance(m.backend, str | LMClient):
            changes["backend_kwargs"] = {**(m.backend_kwargs or {}), "callbacks": callbacks}
        if callbacks is not None and not isinstance(m.sub_backend, str | LMClient | None):
            changes["sub_backend_kwargs"] = {**(m.sub_backend_kwargs or {}), "callbacks": callbacks}
        return config.replace(**changes)

    def _thread_keys(
        self, messages: list[BaseMessage], kwargs: dict[str, Any]
    ) -> tuple[Signature, str, str, str | None]:
        """What a continuation must match: messages, context, configuration, thread."""
        call = _CALL.get()
        configurable = (call[0].get("configurable") if call else None) or {}
        thread = configurable.get("thread_id") or configurable.get("session_id")
        context = kwargs.get("context", self.context)
        options = {k: repr(v) for k, v in self.engine_config().to_options().items()}
        return (
            signature(messages),
            fingerprint(context if isinstance(context, str) else repr(context)),
            fingerprint(options),
            None if thread is None else str(thread),
        )

    async def _arun(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
        target: RunTarget | None,
        progress_cls: type[AsyncProgress] | type[SyncProgress],
        writer: Callable[[Any], None] | None,
    ) -> AIMessage:
        request = rlm_request(
            messages, kwargs, self.context, self.max_query_chars, self.max_instruction_chars
        )
        # A call with bound tools runs fresh: its tools' host functions belong to the call,
        # and a REPL started for an earlier call would not have them.
        keep = self.conversations and not request.tools
        keys = self._thread_keys(messages, kwargs) if keep else None
        claimed = STORE.claim(*keys) if keys else None
        if claimed and not any(m.type == "human" for m in messages[len(claimed[1].transcript) :]):
            # Only a new human turn continues a conversation; tool results of an agent
            # loop are answered by a fresh run that sees the whole exchange (as before).
            STORE.release(claimed[0], claimed[1].transcript)
            claimed = None
        if keys and claimed:
            key, thread = claimed
            try:
                msg = await STORE.loop.arun(
                    self._continue(thread, messages, kwargs, target, writer, stop)
                )
            except BaseException:
                STORE.release(key, None)
                raise
            STORE.release(key, keys[0] + (("ai", message_text(msg)),))
            return msg
        config = self._call_config(target, request)
        root_client, sub_client = make_clients(config)
        progress = progress_cls(target, writer)
        tree = _run_tree(target, config, root_client, sub_client)
        shared = RunResources(
            config,
            root_client=root_client,
            sub_client=sub_client,
            on_event=event_handler(progress, tree),
        )
        sessions: list[RLMSession] = []  # none when one direct call answered (config mode)

        async def loop(path_reason: str) -> RLMResult:
            session = await RLMSession.open(
                config, request.context, request.query, shared=shared, root_model=request.model
            )
            session.state.path_reason = path_reason
            sessions.append(session)
            try:
                return await self._run_with_retries(session, request)
            finally:
                await session.close()

        try:
            result = await direct.complete(
                config, shared, request.context, request.query, rlm=loop,
                root_model=request.model, needs_loop=_needs_loop(request),
            )  # fmt: skip
        finally:
            try:
                await shared.aclose()
            finally:
                await progress.aclose()  # deliver every queued progress event
                tree.close()  # end what a stopped run left open, before this run ends
        msg = self._message(result, request, root_client, stop, tree)
        if keys and sessions:  # a later call may continue this one (its REPL is rebuilt)
            transcript = keys[0] + (("ai", message_text(msg)),)
            STORE.remember_run(transcript, request.context, *keys[1:], sessions[0], result)
        return msg

    async def _run_with_retries(self, session: RLMSession, request: RLMRequest) -> RLMResult:
        """The engine loop, continued while the answer fails the schema or a required call."""
        result = await run(session)
        for _ in range(self.max_output_retries):
            problem = answer_problem(result, request.schema, request.tool_calls)
            if problem is None or not continue_with(session, problem):
                break
            result = await run(session)
        return result

    def _message(
        self,
        result: RLMResult,
        request: RLMRequest,
        root_client: LMClient,
        stop: list[str] | None,
        tree: RunTree,
    ) -> AIMessage:
        stops = [*(self.stop or []), *(stop or [])]
        model = root_model_name(result.usage, request.model or root_client.model_name)
        usage = tree.unreported(result.usage)  # every other call is a run of the tree
        return to_message(result, model, request.schema, request.tool_calls, stops, usage)

    async def _continue(
        self,
        thread: Thread,
        messages: list[BaseMessage],
        kwargs: dict[str, Any],
        target: RunTarget | None,
        writer: Callable[[Any], None] | None,
        stop: list[str] | None,
    ) -> AIMessage:
        """The next turn of a remembered conversation (runs on the store's loop)."""
        conv = await STORE.conversation_for(thread, self.engine_config())
        new = messages[len(thread.transcript) :]
        call_kwargs = {k: v for k, v in kwargs.items() if k != "context"}
        request = rlm_request(
            new, call_kwargs, None, self.max_query_chars, self.max_instruction_chars
        )
        last_human = next((m for m in reversed(new) if m.type == "human"), None)
        question = message_text(last_human) if last_human is not None else None
        query = request.query
        if request.context not in (None, "", question):
            name = await conv.aadd_context(request.context)  # new material: context_1, ...
            query = query or f"The task is stated in `{name}`; find it there and complete it."
        config = self._call_config(target, request)
        root_client, sub_client = make_clients(config)
        progress = SyncProgress(target, writer)
        tree = _run_tree(target, config, root_client, sub_client)
        try:
            session = await conv.open_turn(
                query, on_event=event_handler(progress, tree), clients=(root_client, sub_client)
            )
            session.root_model = request.model
            try:
                result = await self._run_with_retries(session, request)
            except BaseException:
                conv.abandon_turn(session)
                raise
            await conv.end_turn(session, result)
        finally:
            tree.close()
            await root_client.aclose()
            if sub_client is not root_client:
                await sub_client.aclose()
        return self._message(result, request, root_client, stop, tree)

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


def _run_tree(
    target: RunTarget | None, config: RLMConfig, root: LMClient, sub: LMClient
) -> RunTree:
    """The run tree of one call (``.tracing``): LangChain models report their own calls."""
    return RunTree(
        target,
        root_reports_itself=reports_itself(root),
        sub_reports_itself=reports_itself(sub),
        secrets=config_secrets(config),
    )


def _needs_loop(request: RLMRequest) -> str | None:
    """Why a call cannot be one direct LM call (``mode``): its tools and schema checks are
    the RLM loop's (REPL functions, answers reopened until they fit)."""
    if request.tools or request.tool_calls is not None:
        return "the call has bound tools"
    if request.schema is not None:
        return "the call asks for structured output"
    return None


def _reset(token: Any) -> None:
    # A generator closed from another context (e.g. garbage-collected) cannot reset.
    with contextlib.suppress(ValueError):
        _CALL.reset(token)
