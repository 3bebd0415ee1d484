"""Direct or RLM: ``RunLimits.mode`` and the one direct LM call.

Independent reproductions of the RLM paper find that on short inputs one plain LM call
(the whole context and the query in the prompt) is as accurate as the RLM loop, and
cheaper and faster; the loop wins as the context grows past what a model reads well.
``mode`` lets a completion act on that:

- ``"rlm"`` (default, the paper's behaviour): always the loop;
- ``"direct"``: always one LM call, no REPL (an error when the prompt does not fit);
- ``"auto"``: one direct call when the framed prompt fits under the threshold (a share of
  the root model's window, ``direct_threshold``, or ``direct_threshold_tokens``), the
  loop otherwise; a provider's context-length error on the direct call (the estimate is
  only an estimate) falls back to the loop.

:func:`complete` is the one router every form uses: it decides, makes the direct call,
and otherwise hands over to the form's own way of running the engine loop (``rlm``
callback), so there is no second loop. The result says which path ran and why
(``RLMResult.path`` / ``path_reason``); a ``route`` progress event says it as it happens.
The direct call is a root call like any other: budgets reserved and counted, the reply
cap and per-request timeout applied, bounded by ``run_timeout``, failed calls counted.

``Conversation`` turns always run the loop: a conversation's point is the REPL that
outlives each turn, and a direct answer would leave nothing in it for the next one.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rlm_engine import prompts
from rlm_engine.clients import LMClient
from rlm_engine.clients.streaming import partial_usage
from rlm_engine.config import RLMConfig
from rlm_engine.inputs import prepare_input
from rlm_engine.resources import RunResources
from rlm_engine.state import RLMResult, RunPath
from rlm_engine.text import clean_text
from rlm_engine.types import Message
from rlm_engine.windows import (
    CERTAINLY_OVER,
    CHARS_PER_TOKEN,
    TOKENS_PER_MESSAGE,
    is_context_overflow,
    known_window,
    window_from_error,
)

#: The direct call's system prompt: answer from the material, say so when it is not there.
DIRECT_SYSTEM = (
    "You answer a request about the context the user gives you. Read all of the context "
    "and answer from it; if it does not hold the answer, say so. Reply with the answer "
    "itself, without preamble."
)
#: The request when no query is given: the task is stated inside the context.
TASK_IN_CONTEXT = "The task is stated in the context above. Complete it."


@dataclass(frozen=True)
class Route:
    """Which path a completion takes and why (the reason is shown to users as is)."""

    path: RunPath
    reason: str
    #: The direct prompt's estimated size and the threshold it was held to (auto only).
    prompt_tokens: int | None = None
    threshold: int | None = None


class RouteFallback(Exception):
    """The direct call did not fit the model's window (mode="auto"): run the loop."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- the direct prompt ----------------------------------------------------------------------
def context_text(context: Any) -> str:
    """The context as prompt text: a string as is, a list of strings as numbered
    documents, anything else as JSON (``str`` for what JSON cannot hold)."""
    if context is None:
        return ""
    if isinstance(context, str):
        return context
    if isinstance(context, list | tuple) and all(isinstance(x, str) for x in context):
        return "\n\n".join(
            f'<document index="{i}">\n{x}\n</document>' for i, x in enumerate(context, 1)
        )
    try:
        return json.dumps(context, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # circular structures, keys JSON refuses
        return repr(context)


def direct_messages(context: Any, query: str | None) -> list[Message]:
    """The direct call's prompt: a system message, then ONE user message with the context
    first and the request last (long material before the question, as providers advise)."""
    parts = []
    text = context_text(context)
    if text:
        parts.append(f"<context>\n{text}\n</context>")
    parts.append(f"Request: {query}" if query else TASK_IN_CONTEXT)
    return [
        {"role": "system", "content": DIRECT_SYSTEM},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def estimate_prompt_tokens(messages: list[Message]) -> int:
    """Tokens of the direct prompt, estimated on the high side (``rlm_engine.windows``)."""
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    return int(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)


# -- the decision ---------------------------------------------------------------------------
def root_window(config: RLMConfig, client: LMClient, model: str | None) -> tuple[int, bool]:
    """The root model's input window in tokens, and whether it is known (configured, a
    published size, or what the client learned from its server or was given as
    ``context_window``) rather than a rough guess from the client's ``context_chars``."""
    configured = config.history.root_context_window
    if configured:
        return configured, True
    known = known_window(model or client.model_name)
    if known:
        return known, True
    served = getattr(client, "context_window", None)  # vLLM/llama.cpp servers state it
    if isinstance(served, int) and not isinstance(served, bool) and served > 0:
        return served, True
    return int(client.context_chars / CHARS_PER_TOKEN), False


def decide(config: RLMConfig, prompt_tokens: int | None, window: int) -> Route:
    """The path for a direct prompt of ``prompt_tokens`` (None: not measured; only
    mode="rlm" and "direct" need no size) under a root window of ``window`` tokens."""
    run = config.run
    if run.mode == "rlm":
        return Route("rlm", "mode='rlm' (the default): the RLM loop")
    if run.mode == "direct":
        return Route("direct", "mode='direct': one LM call", prompt_tokens)
    if prompt_tokens is None:
        raise ValueError("mode='auto' needs the direct prompt's size")
    if run.direct_threshold_tokens is not None:
        threshold = run.direct_threshold_tokens
        rule = "direct_threshold_tokens"
    else:
        threshold = int(run.direct_threshold * window)
        rule = f"direct_threshold={run.direct_threshold:g} of the root window of {window:,}"
    if prompt_tokens <= threshold:
        why = f"mode='auto': ~{prompt_tokens:,} tokens fit under {threshold:,} ({rule})"
        return Route("direct", why + "; one LM call", prompt_tokens, threshold)
    why = f"mode='auto': ~{prompt_tokens:,} tokens exceed {threshold:,} ({rule})"
    return Route("rlm", why + "; the RLM loop", prompt_tokens, threshold)


def prompt_chars(context: Any, query: str | None) -> int:
    """Characters of :func:`direct_messages` for ``context`` and ``query``, without building
    it for the common shapes (a 50 MB string: 0.02 ms instead of 120 ms, measured)."""
    framing = len(DIRECT_SYSTEM) + len(TASK_IN_CONTEXT) + len(query or "") + 64
    if isinstance(context, str):
        return len(context) + framing
    if isinstance(context, list | tuple) and all(isinstance(x, str) for x in context):
        return sum(len(x) + 40 for x in context) + framing
    return len(context_text(context)) + framing


def plan(
    config: RLMConfig, context: Any, query: str | None, client: LMClient, model: str | None
) -> tuple[Route, list[Message] | None]:
    """The route for ``context`` and ``query``, and the direct prompt when the route is
    direct (built only then: the size is measured without it, and mode="rlm" measures
    nothing)."""
    if config.run.mode == "rlm":
        return decide(config, None, 0), None
    window, _ = root_window(config, client, model)
    tokens = int(prompt_chars(context, query) / CHARS_PER_TOKEN) + 2 * TOKENS_PER_MESSAGE
    route = decide(config, tokens, window)
    return route, direct_messages(context, query) if route.path == "direct" else None


# -- the direct call --------------------------------------------------------------------------
async def answer(
    config: RLMConfig,
    shared: RunResources,
    context: Any,
    query: str | None,
    route: Route,
    messages: list[Message],
    *,
    root_model: str | None = None,
    client: LMClient | None = None,
) -> RLMResult:
    """One direct LM call (by ``client``, default: the run's root client) as a finished
    completion.

    Raises :class:`RouteFallback` when mode="auto" and the provider says the prompt does
    not fit (its cost is already counted): the caller runs the loop instead.
    """
    started = time.perf_counter()
    run_id = uuid.uuid4().hex[:12]
    client = client or shared.root_client
    result = RLMResult(
        response=None,
        status="error",
        usage=shared.usage,
        iterations=[],
        run_id=run_id,
        query=query,
        context_info=prompts.describe_context(context),
        path="direct",
        path_reason=route.reason,
    )
    window, known = root_window(config, client, root_model)
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    model_name = root_model or client.model_name
    far = f"{chars:,} characters, far past the window of {model_name} ({window:,} tokens)"
    far_over = known and chars > window * CERTAINLY_OVER
    if far_over and config.run.mode == "auto":
        raise RouteFallback(f"{route.reason}; but the prompt is {far}, so the RLM loop ran")
    _log_start(config, shared, result, messages, root_model)  # every later path logs a result
    if far_over:
        result.error = (
            f"The direct prompt is {far}; no call was made. Use mode='auto' or mode='rlm' "
            "for a context this size."
        )
        return _finished(shared, result, started)
    budget = shared.budget
    reason = budget.reserve() if not budget.timed_out() else "run_timeout"
    if reason == "run_timeout":
        result.status = "timeout"
    elif reason:
        result.status, result.error = (
            "budget",
            f"Budget exhausted before the direct call ({reason}).",
        )
    else:
        await _call(
            config, shared, client, messages, result, root_model=root_model, started=started
        )
    return _finished(shared, result, started)


async def _call(
    config: RLMConfig,
    shared: RunResources,
    client: LMClient,
    messages: list[Message],
    result: RLMResult,
    *,
    root_model: str | None,
    started: float,
) -> None:
    budget = shared.budget
    # The run's id places the direct run's events: tracers show the call as one LM call
    # (an llm run, a chat span) under the run (OpenTelemetry: a completion span).
    model = root_model or client.model_name
    shared.emit(
        "direct_start",
        depth=0,
        iteration=0,
        run_id=result.run_id,
        model=model,
        path_reason=result.path_reason,
        prompt=messages[-1].get("content", ""),  # tracers keep its head and tail only
    )
    try:
        async with asyncio.timeout(budget.remaining_time()):
            resp = await client.acomplete(
                messages, model=root_model, timeout=budget.clamp(config.reply.timeout)
            )
    except asyncio.CancelledError as e:  # the caller stopped the run: still spent
        _record_spent(shared, e)
        raise
    except Exception as e:
        _record_spent(shared, e)
        if budget.timed_out():
            result.status = "timeout"
            _end_event(shared, result, model, error="run_timeout")
            return
        if is_context_overflow(e):
            stated = window_from_error(e)
            window = f" (its window: {stated:,} tokens)" if stated else ""
            if config.run.mode == "auto":
                fallback = RouteFallback(
                    f"{result.path_reason}; the provider refused the direct prompt as too "
                    f"long{window}, so the RLM loop ran"
                )
                # The paid attempt keeps its own record: an error, then the loop's run.
                result.error = fallback.reason
                _end_event(shared, result, model, error=fallback.reason, fallback=True)
                if shared.logger is not None:
                    result.duration = time.perf_counter() - started
                    shared.logger.log_result(result)
                raise fallback from e
            result.error = (
                f"The direct prompt does not fit the model's window{window}: "
                f"{type(e).__name__}: {e}. Use mode='auto' (falls back to the RLM loop) or "
                "mode='rlm'."
            )
            _end_event(shared, result, model, error=result.error)
            return
        result.error = f"The direct LM call failed after retries: {type(e).__name__}: {e}"
        _end_event(shared, result, model, error=result.error)
        return
    shared.usage.record_response(resp, "root", 0)
    result.status, result.response = "final", clean_text(resp.text)
    shared.emit(
        "direct_end",
        depth=0,
        iteration=0,
        run_id=result.run_id,
        model=resp.model or model,
        text=result.response,
        input_tokens=resp.input_tokens,
        output_tokens=resp.output_tokens,
        cached_input_tokens=resp.cached_input_tokens,
        cache_write_tokens=resp.cache_write_tokens,
        cost=resp.cost,
        truncated=resp.truncated,
    )
    if resp.truncated:
        cap = resp.output_tokens or config.reply.max_tokens or 0
        result.warnings.append(
            f"The direct answer was cut at the reply cap ({cap:,} tokens); raise max_tokens "
            "for a longer answer."
        )


def _log_start(
    config: RLMConfig,
    shared: RunResources,
    result: RLMResult,
    messages: list[Message],
    root_model: str | None,
) -> None:
    """The trace file's metadata line of a direct run (a logger without ``start_direct``
    gets the result line only, as before)."""
    start = getattr(shared.logger, "start_direct", None)
    if start is None:
        return
    system = next((str(m["content"]) for m in messages if m.get("role") == "system"), "")
    start(result, config, shared, system_prompt=system, root_model=root_model)


def _end_event(
    shared: RunResources, result: RLMResult, model: str, *, error: str, fallback: bool = False
) -> None:
    """``direct_end`` of a call that gave no answer (``fallback``: the loop runs next, so
    tracers end the direct run here; no ``final`` event follows for it)."""
    shared.emit(
        "direct_end",
        depth=0,
        iteration=0,
        run_id=result.run_id,
        model=model,
        error=error,
        fallback=fallback,
    )


def _record_spent(shared: RunResources, error: BaseException) -> None:
    spent = partial_usage(error)
    if spent is not None:
        shared.usage.record_response(spent, "root", 0)


def _finished(shared: RunResources, result: RLMResult, started: float) -> RLMResult:
    """Settle a direct result: an error for every status but final, logged, announced."""
    if result.status == "timeout" and result.error is None:
        limit = shared.budget.run_timeout or 0
        result.error = f"The completion ran past its run_timeout of {limit:g} s."
    result.duration = time.perf_counter() - started
    if shared.logger is not None:
        shared.logger.log_result(result)
    shared.emit(
        "final",
        depth=0,
        iteration=0,
        status=result.status,
        response=result.answer,
        warnings=result.warnings,
        error=result.error,
        run_id=result.run_id,
        path=result.path,
        path_reason=result.path_reason,
    )
    return result


# -- the router every form uses ---------------------------------------------------------------
RunLoop = Callable[[str], Awaitable[RLMResult]]


async def complete(
    config: RLMConfig,
    shared: RunResources,
    context: Any,
    query: str | None,
    *,
    rlm: RunLoop,
    root_model: str | None = None,
    needs_loop: str | None = None,
    direct_client: LMClient | None = None,
) -> RLMResult:
    """Answer by the path ``config.run.mode`` picks: the direct call here, or ``rlm(reason)``
    (the form's own way of opening a session and running the engine loop; it records
    ``reason`` on the run's state, ``RLMState.path_reason``).

    ``needs_loop`` says why this call can only be answered by the loop whatever the mode
    (a chat call's bound tools or output schema are REPL functions): it becomes the reason.
    ``direct_client`` makes the direct call when the root client cannot (RLMModule's root
    is a DSPy predictor of RLM turns; its direct call is the task's own predictor).
    """
    client = direct_client or shared.root_client
    if needs_loop and config.run.mode != "rlm":
        reason = f"mode={config.run.mode!r}, but {needs_loop}: the RLM loop"
        shared.emit("route", depth=0, path="rlm", path_reason=reason)
        return await rlm(reason)
    if config.run.mode != "rlm":  # the direct prompt holds the text the REPL would get
        context, query = prepare_input(context, query)
    route, messages = plan(config, context, query, client, root_model)
    if config.run.mode != "rlm":  # a decision was made (mode="rlm" keeps its event stream)
        shared.emit("route", depth=0, path=route.path, path_reason=route.reason)
    if messages is None:
        return await rlm(route.reason)
    try:
        return await answer(
            config, shared, context, query, route, messages, root_model=root_model, client=client
        )
    except RouteFallback as fallback:
        shared.emit("route", depth=0, path="rlm", path_reason=fallback.reason)
        return await rlm(fallback.reason)


__all__ = [
    "DIRECT_SYSTEM",
    "Route",
    "RouteFallback",
    "answer",
    "complete",
    "context_text",
    "decide",
    "direct_messages",
    "estimate_prompt_tokens",
    "plan",
    "prompt_chars",
    "root_window",
]
