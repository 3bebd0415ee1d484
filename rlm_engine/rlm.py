"""``RLM``: the public entry point. ``rlm.completion(context, query)`` replaces an LM call."""

from __future__ import annotations

from typing import Any

from rlm_engine.aio import run_sync
from rlm_engine.display import event_handler
from rlm_engine.environments import HostFunction
from rlm_engine.session import EventHandler, RLMConfig, RLMResult, RLMSession, Shared, run


class RLM:
    """A Recursive Language Model.

    The context lives in a REPL (``environment``); the root model (``backend``) writes code
    against it and calls the sub model (``sub_backend``, default: the root) on pieces.
    ``max_depth=1`` makes ``rlm_query`` a plain sub-LM call; each extra level allows one
    more level of child RLMs, each with its own REPL. Limits apply to the whole completion,
    children included.
    """

    def __init__(
        self,
        backend: Any = "openai",
        backend_kwargs: dict[str, Any] | None = None,
        sub_backend: Any = None,
        sub_backend_kwargs: dict[str, Any] | None = None,
        environment: Any = "local",
        environment_kwargs: dict[str, Any] | None = None,
        max_iterations: int = 30,
        max_depth: int = 1,
        max_concurrency: int = 16,
        max_llm_calls: int | None = None,
        max_tokens: int | None = None,
        max_cost: float | None = None,
        timeout: float | None = None,
        logger: Any = None,
        verbose: bool = False,
        on_event: EventHandler | None = None,
        *,
        max_output_chars: int = 20_000,
        system_prompt: str | None = None,
        tools: dict[str, HostFunction] | None = None,
        tools_doc: str = "",
        repl_setup: str | None = None,
    ) -> None:
        self.config = RLMConfig(
            backend=backend,
            backend_kwargs=backend_kwargs,
            sub_backend=sub_backend,
            sub_backend_kwargs=sub_backend_kwargs,
            environment=environment,
            environment_kwargs=environment_kwargs,
            max_iterations=max_iterations,
            max_depth=max_depth,
            max_concurrency=max_concurrency,
            max_llm_calls=max_llm_calls,
            max_tokens=max_tokens,
            max_cost=max_cost,
            timeout=timeout,
            max_output_chars=max_output_chars,
            system_prompt=system_prompt,
            tools=dict(tools or {}),
            tools_doc=tools_doc,
            repl_setup=repl_setup,
        )
        self.logger = logger
        self.verbose = verbose
        self.on_event = on_event

    async def open_session(
        self, context: Any, query: str | None = None, *, on_event: EventHandler | None = None
    ) -> RLMSession:
        """A session to drive step by step (``generate``/``execute``/``check_final``)."""
        handler = event_handler(self.on_event, on_event, verbose=self.verbose)
        shared = Shared(self.config, logger=self.logger, on_event=handler)
        try:
            return await RLMSession.open(self.config, context, query, shared=shared)
        except BaseException:
            await shared.aclose()
            raise

    async def acompletion(
        self, context: Any, query: str | None = None, *, on_event: EventHandler | None = None
    ) -> RLMResult:
        """Answer ``query`` about ``context`` (or the task stated inside ``context``)."""
        session = await self.open_session(context, query, on_event=on_event)
        try:
            return await run(session)
        finally:
            await session.close()
            await session.shared.aclose()

    def completion(
        self, context: Any, query: str | None = None, *, on_event: EventHandler | None = None
    ) -> RLMResult:
        """Sync form of :meth:`acompletion`; also works inside a running event loop."""
        return run_sync(self.acompletion(context, query, on_event=on_event))
