"""The RLM loop as three explicit steps over an explicit, serializable state.

``generate`` (one root LM call), ``execute`` (run the response's code, answer its
sub-calls, build the REPL feedback) and ``check_final`` (final answer or a limit) are the
only loop logic in the project. ``run`` strings them together for ``RLM.completion``;
the LangGraph integration calls the same methods from its nodes, and rebuilds a REPL after
a crash with ``replay`` (recorded sub-call results are served again, not paid again).

The functions REPL code calls on the host (``llm_query``, ``rlm_query``, tools) live in
``rlm_engine.subcalls``; crash replay in ``rlm_engine.replay``. :class:`RunResources` is
what one top-level completion shares with its child RLMs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from rlm_engine import prompts
from rlm_engine.clients import LMClient
from rlm_engine.clients.streaming import partial_usage
from rlm_engine.compaction import call_root
from rlm_engine.config import EventHandler, RLMConfig
from rlm_engine.environments import Environment, make_environment
from rlm_engine.error_streak import too_many_errors
from rlm_engine.feedback import block_feedback, capped_block, reopen, turn_feedback
from rlm_engine.inputs import prepare_input
from rlm_engine.parsing import find_code_blocks, find_final
from rlm_engine.partial_answer import PARTIAL_ANSWER_NAMES, best_partial_answer
from rlm_engine.replay import RecordedAnswers, replay_cells
from rlm_engine.resources import RunResources
from rlm_engine.state import RLMResult, RLMState
from rlm_engine.subcalls import SubCallHost, subcall_warnings
from rlm_engine.text import clean_text
from rlm_engine.types import CodeBlockResult, Iteration, LMResponse
from rlm_engine.usage import UsageTotals

T = TypeVar("T")


class RLMSession:
    """One RLM completion at one depth: its state, REPL and access to the shared resources."""

    def __init__(
        self,
        config: RLMConfig,
        shared: RunResources,
        state: RLMState,
        env: Environment,
        *,
        root_client: LMClient,
        root_model: str | None = None,
        parent_call: str | None = None,
    ) -> None:
        self.config = config
        self.shared = shared
        self.state = state
        self.env = env
        self.root_client = root_client
        self.root_model = root_model
        #: For a child RLM, the id of the ``rlm_query`` call that started it (its events
        #: carry it, so tracers nest concurrent children under the right call).
        self.parent_call = parent_call
        self.depth = state.depth
        self.totals = UsageTotals()  # everything this session and its children used
        self._recorded = RecordedAnswers()  # filled only while replay() runs
        # ``run`` is handed in because subcalls.py cannot import this module (it imports it).
        self.subcalls = SubCallHost(self, self._recorded, run_child=run)
        self._started = time.perf_counter()
        self._closed = False
        #: The root's window as a context-length error stated it (``rlm_engine.compaction``).
        self.learned_window: int | None = None

    # -- construction -------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        config: RLMConfig,
        context: Any,
        query: str | None = None,
        *,
        shared: RunResources | None = None,
        depth: int = 0,
        root_model: str | None = None,
        state: RLMState | None = None,
        logger: Any = None,
        on_event: EventHandler | None = None,
        parent_call: str | None = None,
    ) -> RLMSession:
        """Start a session: make the clients (top level only) and the REPL holding ``context``.

        Pass ``state`` to continue a run whose process died; call ``replay()`` afterwards to
        rebuild the REPL variables.

        The context and query pass the input boundary first (``rlm_engine.inputs``): text
        is normalized for every environment, and a new run with an empty context and no
        query raises ``EmptyInputError`` (a ``ValueError``) before any LM call.
        """
        context, query = prepare_input(context, query, require_material=state is None)
        shared = shared or RunResources(config, logger=logger, on_event=on_event)
        root_client = shared.root_client if depth == 0 else shared.sub_client
        if state is None:
            info = prompts.describe_context(context)
            first_user = prompts.first_user_message(info, query)
            window = shared.sub_client.context_chars
            state = RLMState.opening(
                config, info, first_user, query, depth=depth, sub_window=window
            )
        env = make_environment(
            config.repl.environment, config.repl.environment_kwargs, verbose=config.observe.verbose
        )
        session = cls(
            config,
            shared,
            state,
            env,
            root_client=root_client,
            root_model=root_model,
            parent_call=parent_call,
        )
        try:
            setup = config.repl.repl_setup if depth == 0 else None  # children hold other contexts
            await env.start(context, session.subcalls.functions(), setup=setup)
        except BaseException:
            await env.close()
            raise
        if depth == 0 and shared.logger is not None and not state.iterations:
            shared.logger.start_run(session)
        return session

    async def open_child(
        self, context: Any, query: str | None, model: str | None, parent_call: str | None = None
    ) -> RLMSession:
        """A child session one level deeper, for ``rlm_query``; it shares this run's resources."""
        return await RLMSession.open(
            self.config,
            context,
            query,
            shared=self.shared,
            depth=self.depth + 1,
            root_model=model,
            parent_call=parent_call,
        )

    def emit(self, event: str, **data: Any) -> None:
        """A progress event of this session, with what tracers need to place it: the depth,
        the session's ``run_id`` and, for a child RLM, the ``parent_call`` that started it."""
        if not self.shared.listening:
            return
        if self.parent_call is not None:
            data["parent_call"] = self.parent_call
        self.shared.emit(event, depth=self.depth, run_id=self.state.run_id, **data)

    def record_spent(self, error: BaseException, role: str, depth: int | None = None) -> None:
        """Count what a failed or abandoned call cost (the client's estimate when the server
        reported nothing): the server worked on it even though it failed."""
        spent = partial_usage(error)
        if spent is not None:
            self.record_usage(spent, role=role, depth=depth)

    def record_usage(self, resp: LMResponse, role: str, depth: int | None = None) -> None:
        """Count one LM call in the run's ledger and in this session's totals."""
        self.shared.usage.record_response(resp, role, self.depth if depth is None else depth)
        self.totals.add_response(resp)

    # -- step 1: generate -----------------------------------------------------------------
    async def generate(self) -> str | None:
        """One root LM call. Sets ``status`` (budget / timeout / error) instead of raising."""
        st = self.state
        if st.pending_response is not None:  # resumed between generate and execute
            return st.pending_response
        if self.shared.budget.timed_out():
            st.status = "timeout"
            return None
        reason = self.shared.budget.reserve()
        if reason:
            st.status = "budget"
            st.error = f"Budget exhausted before the next root call ({reason})."
            return None
        self.emit(
            "iteration_start",
            iteration=st.iteration + 1,
            environment=self.env.name,  # where this turn's code will run
            model=self.root_model or self.root_client.model_name,
            # The newest message of the root's prompt (the first user message or the last
            # feedback): tracers show it as the root call's input, not the whole history.
            prompt=st.iterations[-1].feedback if st.iterations else st.first_user,
        )
        started = time.perf_counter()
        try:
            resp = await call_root(self)  # compacts the history when it nears the window
        except asyncio.CancelledError as e:  # a run timeout or budget stop: still spent
            self.record_spent(e, role="root")
            raise
        except Exception as e:
            self.record_spent(e, role="root")
            if self.shared.budget.timed_out():
                st.status = "timeout"
                return None
            st.status = "error"
            st.error = f"Root LM call failed after retries: {type(e).__name__}: {e}"
            return None
        self.record_usage(resp, role="root")
        text = clean_text(resp.text)
        st.pending_response = text
        st.pending_usage = {
            "input_tokens": resp.input_tokens,
            "output_tokens": resp.output_tokens,
            "cost": resp.cost,
            "latency": time.perf_counter() - started,
            "truncated": resp.truncated,  # cut at the reply cap: execute says so
        }
        self.emit(
            "root_response",
            iteration=st.iteration + 1,
            text=text,
            model=resp.model,
            input_tokens=resp.input_tokens,
            output_tokens=resp.output_tokens,
            cached_input_tokens=resp.cached_input_tokens,
            cache_write_tokens=resp.cache_write_tokens,
            cost=resp.cost,
            truncated=resp.truncated,
        )
        return text

    # -- step 2: execute ------------------------------------------------------------------
    async def execute(self, response: str | None = None) -> Iteration | None:
        """Run the pending response's code blocks, resolve FINAL, and append the iteration."""
        st = self.state
        response = response if response is not None else st.pending_response
        if response is None:
            return None
        response = clean_text(response)
        started = time.perf_counter()
        index = st.iteration + 1
        meta = st.pending_usage or {}
        blocks, final = await self._run_blocks(response, index)
        note = None
        if final is None and meta.get("truncated"):
            # Cut at the reply cap: only its complete blocks ran; a FINAL in the text may be
            # clipped (or an unclosed block's FINAL( call), so the root is asked again.
            cut_at = meta.get("output_tokens") or self.config.reply.max_tokens or 0
            finish = prompts.finish_hint(self.config.repl.finish_hint, self.depth)
            note = prompts.truncated_reply_message(cut_at, len(blocks), finish)
        elif final is None:
            final, note = await self._final_directive(response, blocks)
        it = Iteration(
            index=index,
            response=response,
            code_blocks=blocks,
            final_answer=final,
            feedback=""
            if final is not None
            else turn_feedback(
                blocks,
                note,
                index,
                self.config.run.max_iterations - index,
                self.config.repl.max_output_chars,
                prompts.finish_hint(self.config.repl.finish_hint, self.depth),
            ),
            input_tokens=meta.get("input_tokens", 0),
            output_tokens=meta.get("output_tokens", 0),
            cost=meta.get("cost"),
            root_latency=meta.get("latency", 0.0),
            duration=time.perf_counter() - started,
        )
        self._append_iteration(it)
        return it

    async def _run_blocks(
        self, response: str, index: int
    ) -> tuple[list[CodeBlockResult], str | None]:
        """Run the response's code blocks in order; stop at the first that sets an answer."""
        blocks: list[CodeBlockResult] = []
        for code in find_code_blocks(response):
            result = await self._run_block(code, index)
            blocks.append(result)
            if result.final is not None:
                # The answer is decided; later blocks would only cost time.
                return blocks, result.final
        return blocks, None

    async def _final_directive(
        self, response: str, blocks: list[CodeBlockResult]
    ) -> tuple[str | None, str | None]:
        """The answer a FINAL / FINAL_VAR in the response gives, else a note for the model."""
        directive = find_final(response)
        if directive is not None and directive.kind == "FINAL":
            return directive.value, None
        if directive is not None:
            found, value = await self.env.get_variable(directive.value)
            if found:
                return clean_text(value), None
            variables = await self.env.list_variables()
            finish = prompts.finish_hint(self.config.repl.finish_hint, self.depth)
            return None, prompts.missing_variable_message(directive.value, variables, finish)
        if not blocks:
            return None, prompts.no_code_message(
                prompts.finish_hint(self.config.repl.finish_hint, self.depth)
            )
        return None, None

    def _append_iteration(self, it: Iteration) -> None:
        """Add a finished iteration to the state, the run log and the event stream."""
        st = self.state
        st.iterations.append(it)
        st.pending_response = st.pending_usage = None
        if it.final_answer is not None:
            st.final_answer = it.final_answer
        if self.depth == 0 and self.shared.logger is not None:
            self.shared.logger.log_iteration(it, self.state)
        self.emit("iteration_end", iteration=it.index, final=it.final_answer is not None)

    async def _run_block(self, code: str, index: int) -> CodeBlockResult:
        self.emit("code_start", iteration=index, code=code)
        with self.subcalls.collecting() as calls:
            r = await self.env.execute(code, timeout=self.shared.budget.clamp(self.env.timeout))
        # REPL code can make any str (chr(0xD800), bytes decoded with surrogateescape).
        r.stdout, r.stderr = clean_text(r.stdout), clean_text(r.stderr)
        r.error = None if r.error is None else clean_text(r.error)
        r.final = None if r.final is None else clean_text(r.final)
        result = capped_block(code, r, calls, self.config.repl.max_output_chars)
        self.emit(
            "code_end",
            iteration=index,
            code=code,
            output=block_feedback(0, result, self.config.repl.max_output_chars),
            subcalls=len(calls),
            error=result.error,
            duration=result.duration,
        )
        return result

    # -- step 3: check_final ----------------------------------------------------------------
    def check_final(self) -> bool:
        """True when the run is over; sets ``status`` to why."""
        st = self.state
        if st.final_answer is not None:
            st.status = "final"
        elif st.status is None:  # otherwise error, budget or timeout was already decided
            exhausted = self.shared.budget.exhausted()
            failing = too_many_errors(st.iterations, self.config.run.max_errors)
            if self.shared.budget.timed_out():
                st.status = "timeout"
            elif exhausted:
                st.status = "budget"
                st.error = st.error or f"Budget exhausted ({exhausted})."
            elif failing:  # max_errors: the root's code kept failing
                st.status, st.error = "error", failing
            elif st.iteration >= self.config.run.max_iterations:
                st.status = "max_iterations"
        return st.status is not None

    # -- end of run ------------------------------------------------------------------------
    async def finish(self) -> RLMResult:
        """End the run: its status settled, the best partial answer, the logged result."""
        st = self.state
        st.settle(self.shared.budget.run_timeout)
        if st.status != "final" and st.partial_answer is None:
            partial = await best_partial_answer(self)
            st.partial_answer = None if partial is None else clean_text(partial)
        result = RLMResult.of(
            st,
            self.shared.usage,
            duration=time.perf_counter() - self._started,
            warnings=subcall_warnings(st.iterations),
            environment=self.env.name,
        )
        if self.depth == 0 and self.shared.logger is not None:
            self.shared.logger.log_result(result)
        self.emit(
            "final",
            iteration=st.iteration,
            status=st.status,
            response=result.answer,
            warnings=result.warnings,
            error=st.error,
        )
        return result

    async def within_deadline(self, step: Awaitable[T]) -> T | None:
        """Await one step under the completion's wall-clock timeout.

        On expiry the step is cancelled (running REPL code is interrupted), the run is
        marked ``timeout`` and None is returned; every driver of the steps uses this.
        """
        budget = self.shared.budget
        try:
            async with asyncio.timeout(budget.remaining_time()):
                return await step
        except TimeoutError:
            if not budget.timed_out():
                raise
            self.state.status = self.state.status or "timeout"
            self.state.pending_response = self.state.pending_usage = None
            return None

    def continue_with(self, feedback: str) -> bool:
        """Reopen a run that reached a final answer, with ``feedback`` as the next user turn
        (an answer that failed validation); see :func:`rlm_engine.feedback.reopen`."""
        return reopen(self, feedback)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.env.close()

    # -- crash recovery ------------------------------------------------------------------
    async def replay(self) -> None:
        """Rebuild REPL variables by re-running recorded cells with recorded sub-call answers."""
        await replay_cells(self.env, self.state.iterations, self._recorded)


async def run(session: RLMSession) -> RLMResult:
    """The RLM loop: generate -> execute -> check_final until done. The only loop there is."""
    while not session.check_final():
        response = await session.within_deadline(session.generate())
        if response is not None:
            await session.within_deadline(session.execute(response))
    return await session.finish()


__all__ = ["PARTIAL_ANSWER_NAMES", "RLMResult", "RLMSession", "RLMState", "run"]
