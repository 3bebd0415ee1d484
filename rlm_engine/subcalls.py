"""The functions REPL code calls on the host: sub-LM calls, child RLMs and bound tools.

Every call is recorded as a ``SubCall`` in the trajectory of the code block that made it,
counted in the run's usage and the session's totals, reported as progress events, and,
while a crashed run is replayed, answered from the recording instead of a model. Kept out
of ``rlm_engine.session`` so that module holds only the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from rlm_engine import prompts
from rlm_engine.environments import HostFunction
from rlm_engine.replay import RecordedAnswers
from rlm_engine.text import clean_text
from rlm_engine.types import Iteration, SubCall
from rlm_engine.windows import is_context_overflow, overflow_message, oversized_prompt

if TYPE_CHECKING:  # session.py imports this module, so these names are for type hints only
    from rlm_engine.config import RLMConfig
    from rlm_engine.resources import RunResources
    from rlm_engine.session import RLMResult, RLMSession

#: Runs a child session to its end: ``rlm_engine.session.run``, handed in by the session.
RunChild = Callable[["RLMSession"], Awaitable["RLMResult"]]

_PROMPT_KEEP = 2_000  # characters of a sub-call prompt kept in the trajectory
_KEEP_HEAD = 1_500  # of which from the start of the prompt; the rest from its end
_KEEP_TAIL = _PROMPT_KEEP - _KEEP_HEAD
#: The host functions that ask a model; tools are the user's and report their own errors.
LM_FUNCTIONS = frozenset({"llm_query", "llm_query_batched", "rlm_query", "rlm_query_batched"})


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _keep(prompt: str) -> str:
    if len(prompt) <= _PROMPT_KEEP:
        return prompt
    omitted = len(prompt) - _PROMPT_KEEP
    return (
        f"{prompt[:_KEEP_HEAD]}\n[... {omitted:,} characters omitted ...]\n{prompt[-_KEEP_TAIL:]}"
    )


class SubCallHost:
    """The host functions of one session's REPL, and the record of the calls they answer."""

    def __init__(self, session: RLMSession, recorded: RecordedAnswers, run_child: RunChild) -> None:
        self._session = session
        self._recorded = recorded
        self._run_child = run_child
        self.depth = session.depth
        self._block_calls: list[SubCall] | None = None
        self._ids = itertools.count(1)  # call ids for events: a start and its end share one

    @property
    def config(self) -> RLMConfig:
        return self._session.config  # read each time: ``continue_with`` may replace it

    @property
    def shared(self) -> RunResources:
        return self._session.shared

    def functions(self) -> dict[str, HostFunction]:
        """Everything the REPL can call on the host, by name."""
        fns = {
            "llm_query": HostFunction("llm_query", self._llm_query),
            "llm_query_batched": HostFunction("llm_query_batched", self._llm_query_batched),
            "rlm_query": HostFunction("rlm_query", self._rlm_query),
            "rlm_query_batched": HostFunction("rlm_query_batched", self._rlm_query_batched),
        }
        for name, tool in self.config.repl.tools.items():
            fns[name] = HostFunction(name, self._tool_wrapper(name, tool), tool.doc)
        return fns

    @contextlib.contextmanager
    def collecting(self) -> Iterator[list[SubCall]]:
        """Collect the calls made while one code block runs, into the yielded list."""
        calls: list[SubCall] = []
        self._block_calls = calls
        try:
            yield calls
        finally:
            self._block_calls = None

    def _next_id(self) -> str:
        return f"{self._session.state.run_id}.{next(self._ids)}"

    def _start(self, call: SubCall, call_id: str, *, child: bool = False) -> None:
        """The ``subcall_start`` event; tracers get the prompt's head and tail only."""
        self._session.emit(
            "subcall_start",
            function=call.function,
            call_id=call_id,
            model=call.model or self.shared.sub_client.model_name,
            prompt=call.prompt,
            prompt_chars=call.prompt_chars,
            child=child,
        )

    def _log_call(
        self, call: SubCall, call_id: str | None = None, cached: tuple[int, int] = (0, 0)
    ) -> None:
        if self._block_calls is not None:
            self._block_calls.append(call)
        self._session.emit(
            "subcall_end",
            function=call.function,
            call_id=call_id or self._next_id(),  # replayed calls end without a start
            model=call.model,
            prompt=call.prompt[:200],
            response=call.response[:200],
            answer=_keep(call.response),  # head and tail, for tracers
            error=call.error,
            truncated=call.truncated,
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            cost=call.cost,
            cached_input_tokens=cached[0],
            cache_write_tokens=cached[1],
            latency=call.latency,
            replayed=call.replayed,
        )

    def _new_call(
        self, function: str, prompt: str, model: str | None, key_text: str
    ) -> tuple[SubCall, str | None]:
        """The record of a sub-call, and its recorded answer when a crashed run is replayed."""
        call = SubCall(
            function=function,
            prompt=_keep(prompt),
            response="",
            model=model,
            depth=self.depth + 1,
            prompt_chars=len(prompt),
            prompt_sha=_sha(key_text),
        )
        replayed = self._recorded.take(function, call.prompt_sha)
        if replayed is not None:
            call.response, call.replayed = replayed, True
            self._log_call(call)
        return call, replayed

    # -- llm_query: one plain LM call per prompt ----------------------------------------
    async def _llm_query(self, prompt: Any, model: str | None = None) -> str:
        return await self._sub_llm(prompt, model, "llm_query")

    async def _llm_query_batched(self, prompts_: Any, model: str | None = None) -> list[str]:
        if isinstance(prompts_, str) or not hasattr(prompts_, "__iter__"):
            return [await self._sub_llm(prompts_, model, "llm_query_batched")]
        return list(
            await asyncio.gather(*(self._sub_llm(p, model, "llm_query_batched") for p in prompts_))
        )

    async def _sub_llm(self, prompt: Any, model: str | None, function: str) -> str:
        # REPL code builds prompts: text.py's rule again, so one odd character cannot fail it.
        prompt = clean_text(prompt if isinstance(prompt, str) else str(prompt))
        call, replayed = self._new_call(function, prompt, model, prompt)
        if replayed is not None:
            return replayed
        call_id = self._next_id()
        self._start(call, call_id)
        too_long = oversized_prompt(prompt, model or self.shared.sub_client.model_name, function)
        if too_long:  # certainly past the model's window: say what fits, pay nothing
            call.error = call.response = too_long
            self._log_call(call, call_id)
            return call.response
        reason = self.shared.budget.reserve()
        if reason:
            finish = prompts.finish_hint(self.config.repl.finish_hint, self.depth)
            call.error = call.response = prompts.budget_exhausted_message(reason, finish)
            self._log_call(call, call_id)
            return call.response
        started = time.perf_counter()
        cached = (0, 0)
        try:
            async with self.shared.semaphore:
                resp = await self.shared.sub_client.acomplete(
                    [{"role": "user", "content": prompt}],
                    model=model,
                    timeout=self.shared.budget.clamp(self.config.reply.timeout),
                )
        except asyncio.CancelledError as e:
            self._session.record_spent(e, role="sub", depth=self.depth + 1)
            raise
        except Exception as e:
            self._session.record_spent(e, role="sub", depth=self.depth + 1)
            if is_context_overflow(e):
                call.error = call.response = overflow_message(prompt, e, function)
            else:
                call.error = call.response = f"Error: {function} failed: {type(e).__name__}: {e}"
        else:
            self._session.record_usage(resp, role="sub", depth=self.depth + 1)
            call.response, call.model = clean_text(resp.text), resp.model
            if resp.truncated:  # the code that asked must not take a cut answer as whole
                call.truncated = True
                cut_at = resp.output_tokens or self.config.reply.max_tokens or 0
                call.response += prompts.truncated_answer_note(cut_at)
            call.input_tokens, call.output_tokens, call.cost = (
                resp.input_tokens,
                resp.output_tokens,
                resp.cost,
            )
            cached = (resp.cached_input_tokens, resp.cache_write_tokens)
        call.latency = time.perf_counter() - started
        self._log_call(call, call_id, cached)
        return call.response

    # -- rlm_query: a child RLM per prompt, a plain LM call at the depth limit -------------
    async def _rlm_query(self, prompt: Any, context: Any = None, model: str | None = None) -> str:
        return await self._sub_rlm(prompt, context, model, "rlm_query")

    async def _rlm_query_batched(
        self, prompts_: Any, contexts: Any = None, model: str | None = None
    ) -> list[str]:
        prompts_ = [prompts_] if isinstance(prompts_, str) else list(prompts_)
        ctxs = list(contexts) if contexts is not None else [None] * len(prompts_)
        if len(ctxs) != len(prompts_):
            raise ValueError("rlm_query_batched: contexts must have one entry per prompt")
        return list(
            await asyncio.gather(
                *(
                    self._sub_rlm(p, c, model, "rlm_query_batched")
                    for p, c in zip(prompts_, ctxs, strict=True)
                )
            )
        )

    async def _sub_rlm(self, prompt: Any, context: Any, model: str | None, function: str) -> str:
        prompt = clean_text(prompt if isinstance(prompt, str) else str(prompt))
        if self.depth + 1 >= self.config.run.max_depth:
            # At the depth limit a recursive call is a plain LM call (the paper's semantics).
            text = prompt if context is None else f"{prompt}\n\n{context}"
            return await self._sub_llm(text, model, function)
        key_text = prompt if context is None else f"{prompt}\x00{context!r}"
        call, replayed = self._new_call(function, prompt, model, key_text)
        if replayed is not None:
            return replayed
        call_id = self._next_id()
        self._start(call, call_id, child=True)
        started = time.perf_counter()
        child_context = prompt if context is None else context
        child_query = None if context is None else prompt
        try:
            child = await self._session.open_child(child_context, child_query, model, call_id)
        except Exception as e:
            call.error = call.response = f"Error: {function} could not start a child RLM: {e}"
            self._log_call(call, call_id)
            return call.response
        try:
            result = await self._run_child(child)
        finally:
            await child.close()
        self._session.totals.absorb(child.totals)
        call.input_tokens, call.output_tokens, call.cost = (
            child.totals.input_tokens,
            child.totals.output_tokens,
            child.totals.cost,
        )
        call.children = [it.to_dict() for it in child.state.iterations]
        call.latency = time.perf_counter() - started
        if result.status == "final" and result.response is not None:
            call.response = result.response
            if result.warnings:  # an answer no sub-model output supports is a failed call
                call.error = "child RLM: " + " ".join(result.warnings)
        else:
            call.error = (
                f"child RLM ended with status {result.status}: {result.error or ''}".strip()
            )
            call.response = result.answer or f"Error: {call.error}"
        self._log_call(call, call_id)
        return call.response

    # -- bound tools -----------------------------------------------------------------------
    def _tool_wrapper(self, name: str, tool: HostFunction) -> Callable[..., Any]:
        async def call_tool(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            call = SubCall(
                function=name,
                prompt=_keep(repr((args, kwargs))),
                response="",
                depth=self.depth,
                prompt_chars=0,
                prompt_sha="",
            )
            call_id = self._next_id()
            self._start(call, call_id)
            try:
                value = await tool.fn(*args, **kwargs)
            except Exception as e:
                call.error = f"{type(e).__name__}: {e}"
                call.latency = time.perf_counter() - started
                self._log_call(call, call_id)
                raise
            call.response = _keep(clean_text(str(value)))
            call.latency = time.perf_counter() - started
            self._log_call(call, call_id)
            return value

        return call_tool


def subcall_warnings(iterations: list[Iteration]) -> list[str]:
    """What a result must say about its sub-calls: a warning when every one of them failed.

    A run can end ``final`` although each ``llm_query``/``rlm_query`` returned only an
    error string (a provider down, a key without access to the sub model): the root then
    answers without having read anything. That answer is still returned, with this warning.
    """
    calls = [c for it in iterations for c in it.subcalls if c.function in LM_FUNCTIONS]
    failed = [c for c in calls if c.error]
    if not calls or len(failed) < len(calls):
        return []
    first = failed[0].error or ""
    if len(first) > 300:
        first = first[:300] + "..."
    return [
        f"All {len(calls)} sub-calls of this run failed, so its answer rests on no sub-model "
        f"output (first error: {first})"
    ]
