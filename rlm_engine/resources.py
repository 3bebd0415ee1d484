"""What one top-level completion shares with its child RLMs: clients, budget, events.

A child RLM (``rlm_query`` at ``max_depth > 1``) gets its parent's resources, never new
ones, so the budget, the usage ledger and the sub-call concurrency limit cover the whole
completion.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from rlm_engine.budget import Budget
from rlm_engine.clients import LMClient
from rlm_engine.clients.configured import aclose_made, make_clients
from rlm_engine.config import EventHandler, RLMConfig
from rlm_engine.display import event_handler
from rlm_engine.otel import span_handler
from rlm_engine.trace_content import config_secrets
from rlm_engine.usage import Usage


class RunResources:
    """Resources one top-level completion shares with all its children.

    The root and sub clients, the budget over the usage ledger, the sub-call semaphore,
    the logger and the event handler: a child RLM gets its parent's, never new ones.
    """

    def __init__(
        self,
        config: RLMConfig,
        *,
        root_client: LMClient | None = None,
        sub_client: LMClient | None = None,
        logger: Any = None,
        on_event: EventHandler | None = None,
    ) -> None:
        self.config = config
        if root_client is None or sub_client is None:
            made_root, made_sub = make_clients(config)
            root_client = root_client or made_root
            sub_client = sub_client or made_sub
        self.root_client = root_client
        self.sub_client = sub_client
        self.usage = Usage()
        run = config.run
        self.budget = Budget(
            self.usage,
            max_llm_calls=run.max_llm_calls,
            max_total_tokens=run.max_total_tokens,
            max_cost=run.max_cost,
            run_timeout=run.run_timeout,
        )
        self.semaphore = asyncio.Semaphore(run.max_concurrency)
        observe = config.observe
        # The driver's own handler (progress display, stream writer) comes on top of the
        # configured callback and verbose printer.
        self.logger = logger if logger is not None else observe.logger
        self.on_event = event_handler(observe.on_event, on_event, verbose=observe.verbose)
        # OpenTelemetry spans (rlm_engine.otel): kept apart from ``on_event``, which a
        # driver may replace (LangGraph steps do), because spans last the whole run.
        self.spans = span_handler(observe.tracer_provider, config_secrets(config))

    @property
    def listening(self) -> bool:
        """Whether anything receives this run's events (else events are not built)."""
        return self.on_event is not None or self.spans is not None

    def emit(self, event: str, **data: Any) -> None:
        if not self.listening:
            return
        data["event"] = event
        data.setdefault("usage", self.usage.total.to_dict())
        if self.spans is not None:
            with contextlib.suppress(Exception):  # a broken exporter must not break the run
                self.spans(data)
        if self.on_event is not None:
            with contextlib.suppress(Exception):  # nor a broken progress display
                self.on_event(data)

    async def aclose(self) -> None:
        if self.spans is not None:
            self.spans.close_open()  # spans of a stopped run still end, marked as errors
        await aclose_made(self.config, self.root_client, self.sub_client)


__all__ = ["RunResources"]
