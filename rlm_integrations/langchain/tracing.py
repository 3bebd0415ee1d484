"""The inside of an RLM call as a LangChain run tree (LangSmith, ``collect_runs``, any tracer).

Built from the engine's progress events, the one source of truth about a run: under the
chat model's run (or a LangGraph node's run), each root iteration is a ``chain`` run, and
under it

- the root LM call: an ``llm`` run with the newest prompt message (the first user message
  or the last REPL feedback; earlier ones are in earlier runs), the reply and its usage;
- each code cell: a ``tool`` run named ``repl`` (code in, output out, clipped; an error
  marks it failed);
- each sub-call made by that cell: an ``llm`` run named ``<function>:<model>`` (prompt head
  and tail, answer, model, usage); a bound REPL tool is a ``tool`` run;
- each child RLM (``rlm_query`` below ``max_depth``): a ``chain`` run holding the child's
  own iterations, nested the same way.

A direct run (``mode="direct"|"auto"``) is one ``llm`` run named ``direct:<model>`` under the
call's run (prompt head and tail, answer, usage), and no iteration.

Usage appears once: every LM call the tree shows carries its own ``usage_metadata``, and
:meth:`RunTree.unreported` is what no run carried (a compaction summary, a call that failed
before answering), which the RLM's message reports instead. A LangChain ``llm``/``sub_llm``
reports its calls itself, so the tree does not repeat them. Texts follow the trajectory
log's rules (:mod:`rlm_engine.trace_content`): redacted, head and tail only.

With no callback handler attached the tree only adds up token counts: no run objects
(``benchmarks/bench_tracing.py``). With one, the tree is worked out and its callbacks are
delivered as the events arrive, in order, under one lock (sub-call events may come from
REPL threads): a run is complete when the call (or LangGraph node) returns, and a step's
run exists before anything nested in it starts. That is what lets a LangChain
``llm``/``sub_llm`` nest its own runs in the right place: :func:`following_manager` is the
callback manager handed to those models, whose parent is the step the run is in
(:data:`CURRENT_PARENT`, set in the emitting task as events arrive). Async handlers
(``astream_events``) are run by LangChain's callback manager as for any sync caller.
:meth:`RunTree.close` ends whatever a stopped run left open.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackManager, BaseCallbackManager, CallbackManager
from langchain_core.messages import AIMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, LLMResult

from rlm_engine.subcalls import LM_FUNCTIONS
from rlm_engine.trace_content import TraceText
from rlm_engine.usage import Usage
from rlm_integrations.langchain.client import NOSTREAM_TAG
from rlm_integrations.langchain.progress import RunTarget

_SERIALIZED = {"lc": 1, "type": "not_implemented", "id": ["rlm_engine", "RLM"]}


#: The run a LangChain model the engine calls now should nest under (the iteration for a
#: root turn, the code cell for a sub-call), keyed by the RLM call's own run id. Set by
#: :class:`RunTree` in the task that emits the step's event, which is the task that then
#: makes the call; the key keeps a value left in a caller's task from reaching another call.
CURRENT_PARENT: ContextVar[tuple[UUID, UUID] | None] = ContextVar("rlm_trace_parent", default=None)


class _FollowingCallbackManager(AsyncCallbackManager):
    """A callback manager whose parent run is the run tree's current step, when there is
    one for its RLM call (:data:`CURRENT_PARENT`), else the RLM call's run."""

    call_run_id: UUID | None = None

    @property
    def parent_run_id(self) -> UUID | None:
        current = CURRENT_PARENT.get()
        if current is not None and current[0] == self.call_run_id:
            return current[1]
        return self._fixed_parent

    @parent_run_id.setter
    def parent_run_id(self, value: UUID | None) -> None:
        self._fixed_parent = value
        if self.call_run_id is None:  # the first one set is the RLM call's (copies keep it)
            self.call_run_id = value


def following_manager(target: RunTarget) -> AsyncCallbackManager:
    """Callbacks for the LangChain models an RLM call uses: their runs nest under the
    iteration or code cell they belong to (else under the call's own run)."""
    return _FollowingCallbackManager(
        handlers=list(target.inheritable_handlers),
        inheritable_handlers=list(target.inheritable_handlers),
        parent_run_id=target.run_id,
        tags=list(target.inheritable_tags),
        inheritable_tags=list(target.inheritable_tags),
        metadata=dict(target.inheritable_metadata),
        inheritable_metadata=dict(target.inheritable_metadata),
    )


class TracedStepError(RuntimeError):
    """How a failed step (a code cell that raised, a failed sub-call) shows in a tracer."""


@dataclass
class _Run:
    kind: str  # "chain" | "llm" | "tool"
    parent: UUID


@dataclass
class _Op:
    """One callback to deliver: a run's start (``start`` holds its arguments) or end."""

    run_id: UUID
    kind: str
    start: dict[str, Any] | None = None
    output: Any = None
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def usage_metadata(inp: int, out: int, cache_read: int = 0, cache_write: int = 0) -> UsageMetadata:
    """LangChain's usage record; prompt-cache tokens go in ``input_token_details``."""
    meta = UsageMetadata(input_tokens=inp, output_tokens=out, total_tokens=inp + out)
    if cache_read or cache_write:
        meta["input_token_details"] = {"cache_read": cache_read, "cache_creation": cache_write}
    return meta


def _tokens(e: dict[str, Any]) -> tuple[int, int, int, int]:
    return (
        int(e.get("input_tokens") or 0),
        int(e.get("output_tokens") or 0),
        int(e.get("cached_input_tokens") or 0),
        int(e.get("cache_write_tokens") or 0),
    )


class RunTree:
    """An ``on_event`` handler that turns one RLM call's events into nested LangChain runs.

    ``target`` is the run everything nests under. ``root_reports_itself`` /
    ``sub_reports_itself``: the root / sub client is a LangChain chat model whose calls are
    runs already. ``iterations=False`` puts root calls and cells directly under the target
    (a LangGraph node's run is the step already).
    """

    def __init__(
        self,
        target: RunTarget | None,
        *,
        root_reports_itself: bool = False,
        sub_reports_itself: bool = False,
        iterations: bool = True,
        secrets: list[str] | None = None,
    ) -> None:
        self.target = target
        self.root_reports_itself = root_reports_itself
        self.sub_reports_itself = sub_reports_itself
        self.iterations = iterations
        self._tally = [0, 0, 0, 0]  # input, output, cache read, cache write of shown calls
        self._child_calls: set[str] = set()
        self._lock = threading.RLock()  # events may come from REPL threads
        # The call's own handlers too: ``collect_runs`` and other configure hooks attach
        # theirs to every run without making them inheritable.
        handlers = [] if target is None else [*target.handlers, *target.inheritable_handlers]
        self._handlers = list({id(h): h for h in handlers}.values())
        self.active = bool(self._handlers)
        self._delivered: dict[UUID, Any] = {}  # run managers of started runs
        if self.active:
            self._text = TraceText(secrets)
            self._open: dict[UUID, _Run] = {}
            self._current: dict[tuple[str, str], UUID] = {}
            self._calls: dict[str, UUID] = {}

    # -- the handler: count always, trace only when someone listens ----------------------
    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        ops: list[_Op] = []
        with self._lock:
            if kind == "subcall_start" and event.get("child"):
                self._child_calls.add(str(event.get("call_id")))
            elif kind in ("root_response", "direct_end") or (
                kind == "subcall_end"
                and event.get("function") in LM_FUNCTIONS
                and str(event.get("call_id")) not in self._child_calls
            ):
                for i, n in enumerate(_tokens(event)):
                    self._tally[i] += n
            if not self.active:
                return
            with contextlib.suppress(Exception):  # a bad event must not break the run
                self._apply(event, ops)
            for op in ops:
                with contextlib.suppress(Exception):  # nor a broken handler
                    self._run(op)
            parent = None
            with contextlib.suppress(Exception):
                parent = self._follow(event)
        if parent is not None and self.target is not None:
            # In the emitting task: the LM call it makes next nests there.
            CURRENT_PARENT.set((self.target.run_id, parent))

    def unreported(self, usage: Usage) -> UsageMetadata:
        """What no run of the tree (nor a LangChain model's own run) carried."""
        t = usage.total
        with self._lock:
            inp, out, read, write = self._tally
        return usage_metadata(
            max(t.input_tokens - inp, 0),
            max(t.output_tokens - out, 0),
            max(t.cached_input_tokens - read, 0),
            max(t.cache_write_tokens - write, 0),
        )

    def close(self, error: str = "the RLM call ended before this step finished") -> None:
        """End every run still open (a stopped run's), innermost first."""
        if not self.active:
            return
        ops: list[_Op] = []
        with self._lock:
            for run_id in [r for r, e in self._open.items() if e.parent not in self._open]:
                self._end(run_id, ops, error=error)
            self._current.clear()
            for op in ops:
                with contextlib.suppress(Exception):
                    self._run(op)

    def _follow(self, e: dict[str, Any]) -> UUID | None:
        """The step a LangChain model's next call belongs in, when the event starts one."""
        kind, run = e.get("event"), str(e.get("run_id"))
        depth = int(e.get("depth") or 0)
        if kind == "iteration_start" and (
            self.root_reports_itself if depth == 0 else self.sub_reports_itself
        ):
            return self._current.get(("iter", run)) or self._session_parent(e)
        lm_call = e.get("function") in LM_FUNCTIONS and not e.get("child")
        if kind == "subcall_start" and self.sub_reports_itself and lm_call:
            return (
                self._current.get(("cell", run))
                or self._current.get(("iter", run))
                or self._session_parent(e)
            )
        return None

    # -- delivery --------------------------------------------------------------------------
    def _run(self, op: _Op) -> None:
        entry = self._delivered.get(op.run_id)
        if op.start is not None:
            mgr = self._manager(CallbackManager, op)
            method, args, kwargs = self._start_call(mgr, op)
            result = method(*args, **kwargs)
            self._delivered[op.run_id] = result[0] if isinstance(result, list) else result
        elif entry is not None:
            method, args = self._end_call(entry, op)
            method(*args)

    def _manager(self, cls: type[BaseCallbackManager], op: _Op) -> Any:
        t = self.target
        assert t is not None and op.start is not None
        inheritable = dict(t.inheritable_metadata)
        return cls(
            handlers=list(self._handlers),
            inheritable_handlers=list(t.inheritable_handlers),
            parent_run_id=op.start["parent"],
            tags=[*t.inheritable_tags, *op.start["tags"]],
            inheritable_tags=list(t.inheritable_tags),
            metadata={**inheritable, **op.meta},
            inheritable_metadata=inheritable,
        )

    @staticmethod
    def _start_call(mgr: Any, op: _Op) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        assert op.start is not None
        name, data = op.start["name"], op.start["data"]
        if op.kind == "chain":
            return mgr.on_chain_start, (_SERIALIZED, data), {"run_id": op.run_id, "name": name}
        if op.kind == "tool":
            kwargs = {"run_id": op.run_id, "name": name}
            return mgr.on_tool_start, ({"name": name}, data), kwargs
        kwargs = {
            "run_id": op.run_id,
            "name": name,
            "invocation_params": {"model": op.meta.get("ls_model_name"), "_type": "rlm"},
            "batch_size": 1,
        }
        # A text ``llm`` run, not a chat-model run: LangChain's contract counts one
        # ``on_chat_model_start`` per chat-model call, the RLM's own; the usage is the same.
        return mgr.on_llm_start, (_SERIALIZED, [data]), kwargs

    def _end_call(self, rm: Any, op: _Op) -> tuple[Any, tuple[Any, ...]]:
        self._delivered.pop(op.run_id, None)
        if op.error is not None:
            exc = TracedStepError(op.error)
            method = {"chain": "on_chain_error", "llm": "on_llm_error"}.get(
                op.kind, "on_tool_error"
            )
            return getattr(rm, method), (exc,)
        if op.kind == "chain":
            out = op.output if isinstance(op.output, Mapping) else {"output": op.output}
            return rm.on_chain_end, (out,)
        if op.kind == "llm":
            result = op.output
            if not isinstance(result, LLMResult):
                result = LLMResult(generations=[[ChatGeneration(message=AIMessage(""))]])
            return rm.on_llm_end, (result,)
        return rm.on_tool_end, (op.output if op.output is not None else "",)

    # -- the tree, worked out from events (under the lock) ---------------------------------
    def _apply(self, e: dict[str, Any], ops: list[_Op]) -> None:
        run = e.get("run_id")
        if run is None:  # events of no session (routing, compaction) are not steps
            return
        run = str(run)
        kind = e.get("event")
        depth = int(e.get("depth") or 0)
        if kind == "iteration_start":
            self._close(run, ops, "root", "cell", "iter")
            parent = self._session_parent(e)
            if self.iterations:
                n = int(e.get("iteration") or 0)
                parent = self._start(
                    ops, "chain", parent, f"iteration {n}", {"iteration": n}, depth
                )
                self._current[("iter", run)] = parent
            if not (self.root_reports_itself if depth == 0 else self.sub_reports_itself):
                model = str(e.get("model") or "root")
                prompt = self._text(e.get("prompt"))
                meta = _llm_meta(model, depth, "root")
                root = self._start(ops, "llm", parent, f"root:{model}", prompt, depth, meta)
                self._current[("root", run)] = root
        elif kind == "root_response":
            root_id = self._current.pop(("root", run), None)
            if root_id is not None:
                self._end(root_id, ops, output=self._reply(e, e.get("text")))
        elif kind == "code_start":
            parent = self._current.get(("iter", run)) or self._session_parent(e)
            cell = self._start(ops, "tool", parent, "repl", self._text(e.get("code")), depth)
            self._current[("cell", run)] = cell
        elif kind == "code_end":
            cell_id = self._current.pop(("cell", run), None)
            if cell_id is not None:
                output = self._text(e.get("output"))
                error = f"{self._text(e.get('error'))}\n{output}" if e.get("error") else None
                self._end(cell_id, ops, output=output, error=error)
        elif kind == "subcall_start":
            self._start_subcall(run, e, depth, ops)
        elif kind == "subcall_end":
            self._end_subcall(run, e, depth, ops)
        elif kind == "iteration_end":
            self._close(run, ops, "root", "cell", "iter", outputs={"final": bool(e.get("final"))})
        elif kind == "direct_start" and not self.root_reports_itself:
            # mode direct/auto: the run's one LM call, an llm run under the RLM call's run
            model = str(e.get("model") or "root")
            meta = _llm_meta(model, depth, "direct")
            prompt = self._text(e.get("prompt"))
            parent = self._session_parent(e)
            self._current[("root", run)] = self._start(
                ops, "llm", parent, f"direct:{model}", prompt, depth, meta
            )
        elif kind == "direct_end":
            root_id = self._current.pop(("root", run), None)
            if root_id is not None:
                failed = e.get("error")
                reply = None if failed else self._reply(e, e.get("text"))
                self._end(root_id, ops, output=reply, error=self._text(failed) if failed else None)
        elif kind == "final":
            error = None if e.get("status") == "final" else str(e.get("error") or e.get("status"))
            self._close(run, ops, "root", "cell", "iter", error=error)

    def _session_parent(self, e: dict[str, Any]) -> UUID:
        call = e.get("parent_call")
        if call is not None and str(call) in self._calls:
            return self._calls[str(call)]
        assert self.target is not None
        return self.target.run_id

    def _start_subcall(self, run: str, e: dict[str, Any], depth: int, ops: list[_Op]) -> None:
        parent = (
            self._current.get(("cell", run))
            or self._current.get(("iter", run))
            or self._session_parent(e)
        )
        fn, call = str(e.get("function") or ""), str(e.get("call_id"))
        prompt = self._text(e.get("prompt"))
        if e.get("child"):
            self._calls[call] = self._start(ops, "chain", parent, fn, {"prompt": prompt}, depth + 1)
        elif fn in LM_FUNCTIONS:
            if not self.sub_reports_itself:
                model = str(e.get("model") or "sub")
                meta = _llm_meta(model, depth + 1, fn)
                name = f"{fn}:{model}"
                self._calls[call] = self._start(ops, "llm", parent, name, prompt, depth, meta)
        else:
            self._calls[call] = self._start(ops, "tool", parent, fn, prompt, depth)

    def _end_subcall(self, run: str, e: dict[str, Any], depth: int, ops: list[_Op]) -> None:
        call = str(e.get("call_id"))
        run_id = self._calls.pop(call, None)
        if run_id is None and e.get("replayed"):  # answered from a record: start and end
            self._start_subcall(run, {**e, "child": False}, depth, ops)
            run_id = self._calls.pop(call, None)
        entry = self._open.get(run_id) if run_id is not None else None
        if run_id is None or entry is None:
            return  # shown by a LangChain model's own run
        error = self._text(e.get("error")) if e.get("error") else None
        if entry.kind == "chain":
            self._end(run_id, ops, output={"answer": self._text(e.get("answer"))}, error=error)
        elif entry.kind == "llm":
            self._end(run_id, ops, output=self._reply(e, e.get("answer")), error=error)
        else:
            self._end(run_id, ops, output=self._text(e.get("answer")), error=error)

    def _reply(self, e: dict[str, Any], text: Any) -> LLMResult:
        inp, out, read, write = _tokens(e)
        msg = AIMessage(
            content=self._text(text),
            usage_metadata=usage_metadata(inp, out, read, write),
            response_metadata={
                "model_name": e.get("model"),
                "model_provider": "rlm",
                "cost": e.get("cost"),
                "truncated": bool(e.get("truncated")),
            },
        )
        return LLMResult(generations=[[ChatGeneration(message=msg)]])

    def _start(
        self,
        ops: list[_Op],
        kind: str,
        parent: UUID,
        name: str,
        data: Any,
        depth: int,
        meta: dict[str, Any] | None = None,
    ) -> UUID:
        run_id = uuid.uuid4()
        # nostream: a graph's "messages" stream shows the RLM's answer, not its inner calls.
        tags = [NOSTREAM_TAG] if kind == "llm" else []
        start = {"parent": parent, "name": name, "data": data, "tags": tags}
        ops.append(_Op(run_id, kind, start=start, meta=meta or {"rlm_depth": depth}))
        self._open[run_id] = _Run(kind, parent)
        return run_id

    def _close(
        self,
        run: str,
        ops: list[_Op],
        *kinds: str,
        outputs: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """End the session's current runs of ``kinds`` (innermost first)."""
        for kind in kinds:
            run_id = self._current.pop((kind, run), None)
            if run_id is None:
                continue
            if kind == "iter" and error is None:
                self._end(run_id, ops, output=outputs or {})
            else:
                self._end(run_id, ops, error=error or "the step ended without a result")

    def _end(
        self, run_id: UUID, ops: list[_Op], *, output: Any = None, error: str | None = None
    ) -> None:
        """End one run, after every run still open under it (a tracer needs that order)."""
        for child in [r for r, entry in self._open.items() if entry.parent == run_id]:
            self._end(child, ops, error=error or "the step ended before this one finished")
        entry = self._open.pop(run_id, None)
        if entry is not None:
            ops.append(_Op(run_id, entry.kind, output=output, error=error))


def node_run_tree(config: Any) -> RunTree | None:
    """A run tree for the LangGraph node (or any runnable) running now, or None untraced.

    For the RLM graph's steps: root calls and cells nest directly under the node's own run
    (``generate`` / ``execute`` are the iteration's steps already), delivered at once so
    they are complete when the node returns. ``config`` is the engine's ``RLMConfig``.
    """
    from langchain_core.runnables import ensure_config

    from rlm_engine.clients import LMClient
    from rlm_engine.trace_content import config_secrets

    given = ensure_config().get("callbacks")
    if not isinstance(given, BaseCallbackManager) or given.parent_run_id is None:
        return None
    # configure() adds the handlers of configure hooks (``collect_runs``, tracing env vars),
    # which are attached per run, not inherited.
    callbacks = CallbackManager.configure(inheritable_callbacks=given)
    if not (callbacks.handlers or callbacks.inheritable_handlers):
        return None
    models = config.models
    sub = models.sub_backend if models.sub_backend is not None else models.backend
    return RunTree(
        RunTarget.from_manager(callbacks, given.parent_run_id),
        root_reports_itself=not isinstance(models.backend, str | LMClient),
        sub_reports_itself=not isinstance(sub, str | LMClient),
        iterations=False,
        secrets=config_secrets(config),
    )


def reported_tokens(history: list[dict[str, Any]]) -> tuple[int, int]:
    """Input and output tokens of the LM calls a trajectory shows as runs of their own: each
    root turn and each answered sub-call, child RLMs' included (their own turns and calls;
    an ``rlm_query``'s totals are those). What a trajectory does not show (a compaction
    summary, a call that failed before answering) is left out."""
    inp = out = 0
    for it in history:
        inp += int(it.get("input_tokens") or 0)
        out += int(it.get("output_tokens") or 0)
        for block in it.get("code_blocks") or []:
            for call in block.get("subcalls") or []:
                if call.get("children"):
                    i, o = reported_tokens(call["children"])
                elif call.get("function") in LM_FUNCTIONS:
                    i, o = int(call.get("input_tokens") or 0), int(call.get("output_tokens") or 0)
                else:
                    i = o = 0
                inp, out = inp + i, out + o
    return inp, out


def _llm_meta(model: str, depth: int, role: str) -> dict[str, Any]:
    return {
        "ls_provider": "rlm",
        "ls_model_name": model,
        "ls_model_type": "chat",
        "rlm_depth": depth,
        "rlm_role": role,
    }


__all__ = [
    "CURRENT_PARENT",
    "RunTree",
    "TracedStepError",
    "following_manager",
    "node_run_tree",
    "reported_tokens",
    "usage_metadata",
]
