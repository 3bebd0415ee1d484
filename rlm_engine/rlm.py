"""``RLM``: the public entry point. ``rlm.completion(context, query)`` replaces an LM call."""

from __future__ import annotations

from typing import Any

from rlm_engine import direct
from rlm_engine.aio import run_sync
from rlm_engine.config import EventHandler, RLMConfig, make_config
from rlm_engine.conversation import Conversation
from rlm_engine.inputs import check_material
from rlm_engine.resources import RunResources
from rlm_engine.session import RLMResult, RLMSession, run


class RLM:
    """A Recursive Language Model.

    The context lives in a REPL (``environment``); the root model (``backend``/``model``)
    writes code against it and calls the sub model (``sub_backend``/``sub_model``, default:
    the root) on pieces. ``max_depth=1`` makes ``rlm_query`` a plain sub-LM call; each extra
    level allows one more level of child RLMs, each with its own REPL.

    Options are those of :class:`~rlm_engine.config.RLMConfig`, flat by name
    (``RLM(backend="openai", model="gpt-5-mini", max_iterations=20, run_timeout=600)``),
    or a ready ``config`` (the options then change it). ``max_tokens``/``timeout`` limit
    one LM reply/request; ``max_total_tokens``/``max_llm_calls``/``max_cost``/
    ``run_timeout`` limit the whole completion, children included.
    """

    def __init__(self, config: RLMConfig | None = None, **options: Any) -> None:
        self.config = make_config(config, **options)

    @property
    def logger(self) -> Any:
        """The configured trajectory logger (``RLMConfig.observe.logger``)."""
        return self.config.observe.logger

    def conversation(
        self, context: Any = None, *, on_event: EventHandler | None = None
    ) -> Conversation:
        """A conversation over ``context``: one REPL that outlives each turn.

        ``with rlm.conversation(doc) as conv: conv.send("q1"); conv.send("q2")`` (or
        ``async with`` and ``await conv.asend(...)``); see :mod:`rlm_engine.conversation`.
        """
        return Conversation(self.config, context, on_event=on_event)

    async def open_session(
        self, context: Any, query: str | None = None, *, on_event: EventHandler | None = None
    ) -> RLMSession:
        """A session to drive step by step (``generate``/``execute``/``check_final``).

        Raises ``EmptyInputError`` (a ``ValueError``) at once, before any client is made,
        when the context is empty and there is no query (see ``rlm_engine.inputs``).
        A session is the RLM loop whatever ``mode`` says: routing to one direct call is
        :meth:`acompletion`'s (``rlm_engine.direct.complete``).
        """
        check_material(context, query)
        shared = RunResources(self.config, on_event=on_event)
        try:
            return await RLMSession.open(self.config, context, query, shared=shared)
        except BaseException:
            await shared.aclose()
            raise

    async def acompletion(
        self, context: Any, query: str | None = None, *, on_event: EventHandler | None = None
    ) -> RLMResult:
        """Answer ``query`` about ``context`` (or the task stated inside ``context``).

        ``mode`` (``RLMConfig.run.mode``) picks the RLM loop, one direct LM call, or
        whichever fits (:mod:`rlm_engine.direct`); ``result.path``/``path_reason`` say
        which ran and why.
        """
        check_material(context, query)
        shared = RunResources(self.config, on_event=on_event)

        async def loop(reason: str) -> RLMResult:
            session = await RLMSession.open(self.config, context, query, shared=shared)
            session.state.path_reason = reason
            try:
                return await run(session)
            finally:
                await session.close()

        try:
            return await direct.complete(self.config, shared, context, query, rlm=loop)
        finally:
            await shared.aclose()

    def completion(
        self, context: Any, query: str | None = None, *, on_event: EventHandler | None = None
    ) -> RLMResult:
        """Sync form of :meth:`acompletion`; also works inside a running event loop."""
        return run_sync(self.acompletion(context, query, on_event=on_event))
