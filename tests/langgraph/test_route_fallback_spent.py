"""mode="auto" in the graph: when the direct attempt is refused as too long and the loop
runs instead, that attempt belongs to the loop's run, as in ``RLM.completion``: its call
counts against ``max_llm_calls`` (and any usage recorded for it against the budgets), and
``run_timeout`` counts from when routing started, not from the loop's first step."""

from __future__ import annotations

import time
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from rlm_engine import RLM
from rlm_engine.clients.openai import OpenAIClient
from rlm_engine.clients.streaming import attach_partial_usage
from rlm_engine.scripted import ScriptedModel, ScriptedServer
from rlm_engine.types import LMResponse
from rlm_engine.windows import is_context_overflow
from rlm_integrations.langgraph import build_rlm_graph
from rlm_integrations.langgraph.runtime import run_blocking
from tests.support.mode_support import (
    BACKENDS,
    QUESTION,
    completions,
    haystack,
    refused,
    teach_direct,
    wire_options,
)

CONTEXT = haystack("6061", lines=700)  # ~8k tokens, past the server's 4,000


def _options(server: ScriptedServer, backend: str, **extra: Any) -> dict[str, Any]:
    return {
        **wire_options(server, backend),
        "environment": "local",
        "mode": "auto",
        "direct_threshold_tokens": 100_000,  # wrong on purpose: the provider knows better
        "root_context_window": 8_000,
        "backend_kwargs": {"context_chars": 8_000},
        **extra,
    }


def _graph_run(server: ScriptedServer, backend: str, **extra: Any) -> tuple[dict[str, Any], Any]:
    app = build_rlm_graph(**_options(server, backend, **extra)).compile(
        checkpointer=InMemorySaver()
    )
    cfg = {"configurable": {"thread_id": "fallback"}}
    out = app.invoke({"context": CONTEXT, "query": QUESTION}, cfg)
    return out, app.get_state(cfg).values


@pytest.mark.parametrize("backend", BACKENDS)
def test_refused_attempt_counts_against_max_llm_calls(backend: str) -> None:
    model = ScriptedModel()
    teach_direct(model)
    with ScriptedServer(model, context_window=4_000) as server:
        out, _ = _graph_run(server, backend)
        assert out["status"] == "final" and "refused the direct prompt" in out["path_reason"]
        answered = len(completions(server))  # the loop's calls; the refusal is not one
    # A limit of exactly the loop's calls: the refused attempt took one of them, so one
    # call fewer is made, by RLM.completion and by the graph alike.
    limit = {"max_llm_calls": answered}
    model = ScriptedModel()
    teach_direct(model)
    with ScriptedServer(model, context_window=4_000) as server:
        RLM(**_options(server, backend, **limit)).completion(CONTEXT, QUESTION)
        assert len(refused(server)) == 1 and len(completions(server)) == answered - 1
    model = ScriptedModel()
    teach_direct(model)
    with ScriptedServer(model, context_window=4_000) as server:
        out, _ = _graph_run(server, backend, **limit)
        assert out["path"] == "rlm" and len(refused(server)) == 1
        assert len(completions(server)) == answered - 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_loop_run_starts_when_routing_did(backend: str) -> None:
    attempts: list[float] = []

    def on_event(event: dict[str, Any]) -> None:
        if event.get("event") == "direct_start":
            attempts.append(time.time())

    model = ScriptedModel()
    teach_direct(model)
    with ScriptedServer(model, context_window=4_000) as server:
        out, values = _graph_run(server, backend, on_event=on_event)
        assert out["status"] == "final" and len(refused(server)) == 1
        assert len(attempts) == 1  # the route node delivers each event once
    # The run (its run_timeout deadline, and a rebuild's) began before the refused attempt.
    assert values["run"]["started_at"] <= attempts[0]


ESTIMATE = 7_777  # tokens a client recorded for the refused attempt (marked estimated)


class _EstimatingClient(OpenAIClient):
    """A client that records an estimate for a refused call, as streaming clients do for
    abandoned calls: the engine adds ``partial_usage`` to the run's ledger. The test closes
    it (RunResources closes the clients it is given, even a ready instance)."""

    async def aclose(self) -> None:
        pass

    async def acomplete(
        self, messages: list[Any], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        try:
            return await super().acomplete(messages, model=model, timeout=timeout)
        except Exception as e:
            if is_context_overflow(e):
                spent = LMResponse("", "scripted-root", input_tokens=ESTIMATE, usage_estimated=True)
                attach_partial_usage(e, spent)
            raise


def test_usage_recorded_for_the_refused_attempt_is_the_loop_runs() -> None:
    model = ScriptedModel()
    teach_direct(model)
    with ScriptedServer(model, context_window=4_000) as server:
        client = _EstimatingClient(
            "scripted-root", server.base_url, "sk-test", max_retries=0, context_chars=8_000
        )
        options = {**_options(server, "openai"), "backend": client}
        for name in ("model", "base_url", "api_key", "max_retries", "backend_kwargs"):
            options.pop(name)
        cfg = {"configurable": {"thread_id": "estimate"}}
        app = build_rlm_graph(**options).compile(checkpointer=InMemorySaver())
        try:
            out = app.invoke({"context": CONTEXT, "query": QUESTION}, cfg)
            records = app.get_state(cfg).values["usage_records"]
        finally:
            run_blocking(OpenAIClient.aclose(client))
        assert out["path"] == "rlm" and len(refused(server)) == 1
        served = sum(r.prompt_tokens for r in server.stats.log if r.model and not r.fault)
    total = out["usage"]["total"]
    assert total["input_tokens"] == served + ESTIMATE
    assert total["calls"] == len(records) == len(completions(server)) + 1
    assert records[0][3] == ESTIMATE  # first, as in RLM.completion's ledger


def test_a_rebuilt_run_still_counts_the_refused_attempt() -> None:
    """The REPL is rebuilt from the checkpoint after a crash (here: live sessions closed
    while paused before ``execute``); the rebuilt budget counted only recorded usage rows,
    so a refused attempt that recorded none was forgotten and one call too many was made."""
    from rlm_integrations.langgraph import REGISTRY

    backend = "openai"
    model = ScriptedModel()
    teach_direct(model)
    with ScriptedServer(model, context_window=4_000) as server:
        out, _ = _graph_run(server, backend)
        answered = len(completions(server))
    model = ScriptedModel()
    teach_direct(model)
    with ScriptedServer(model, context_window=4_000) as server:
        opts = _options(server, backend, max_llm_calls=answered)
        app = build_rlm_graph(**opts).compile(
            checkpointer=InMemorySaver(), interrupt_before=["execute"]
        )
        cfg = {"configurable": {"thread_id": "rebuilt"}}
        app.invoke({"context": CONTEXT, "query": QUESTION}, cfg)
        while app.get_state(cfg).next:
            run_blocking(REGISTRY.aclose_all())  # the process that held the REPL is gone
            app.invoke(None, cfg)
        assert len(refused(server)) == 1
        assert len(completions(server)) == answered - 1
