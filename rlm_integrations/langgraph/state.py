"""The RLM graph's state schema: what LangGraph checkpoints after every step.

Checkpoint size is the point of this module. LangGraph's ``SqliteSaver`` stores every
ordinary channel inline in every checkpoint, so a context kept in a plain key would be
re-serialized after each step (50 MB x 3 steps x iterations). The big and the growing
keys are therefore :class:`~langgraph.channels.delta.DeltaChannel` s: a checkpoint keeps
only their new writes, and LangGraph rebuilds the value from the ancestor writes when a
thread is loaded. The context is written once; each ``execute`` step appends one
iteration; every other key is a small scalar.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Annotated, Any

from langgraph.channels import DeltaChannel
from typing_extensions import TypedDict

from rlm_integrations.langgraph.context_ref import ContextRef


def keep_last(_state: Any, writes: Sequence[Any]) -> Any:
    """Reducer of write-once keys: the newest write wins (batching-invariant)."""
    return writes[-1]


#: LangGraph's "no value" sentinel: what an empty channel checkpoints, and what LangGraph
#: passes to ``from_checkpoint`` for a channel the checkpoint does not hold. Its home is
#: private (``langgraph._internal._typing.MISSING``), so it is not imported: the public
#: ``DeltaChannel.checkpoint()`` is documented to always return it.
#: ``tests/langgraph/test_lg_upstream.py`` pins that this is LangGraph's sentinel.
MISSING: Any = DeltaChannel(keep_last).checkpoint()


def append_items(state: list[Any] | None, writes: Sequence[list[Any]]) -> list[Any]:
    """Reducer of append-only keys: each write is a list of new items."""
    out = list(state or [])
    for items in writes:
        out.extend(items)
    return out


class WriteOnceChannel(DeltaChannel):
    """A ``DeltaChannel`` for a value of any type that is set, not accumulated.

    ``DeltaChannel`` starts empty as ``typ()``, which fails for ``Any`` and would turn a
    missing context into ``""``; this channel stays unset until the first write.
    ``DeltaChannel`` is beta in LangGraph, and no public hook does this, so the class
    overrides its channel methods; ``tests/langgraph/test_lg_upstream.py`` pins what it
    relies on (the constructor LangGraph re-creates channels with, the empty sentinel).
    """

    def __init__(
        self, reducer: Any = keep_last, typ: Any = None, *, snapshot_frequency: int = 100
    ) -> None:
        # ``reducer`` is accepted because LangGraph re-creates channels as
        # ``cls(reducer, typ, snapshot_frequency=...)``; it is always ``keep_last``.
        super().__init__(keep_last, typ, snapshot_frequency=snapshot_frequency)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WriteOnceChannel) and (
            self.snapshot_frequency == other.snapshot_frequency
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like the base channel

    def copy(self) -> WriteOnceChannel:
        new = WriteOnceChannel(keep_last, self.typ, snapshot_frequency=self.snapshot_frequency)
        new.key = self.key
        new.value = copy.copy(self.value) if self.is_available() else self.value
        return new

    def from_checkpoint(self, checkpoint: Any) -> WriteOnceChannel:
        if checkpoint is MISSING:
            new = WriteOnceChannel(keep_last, self.typ, snapshot_frequency=self.snapshot_frequency)
            new.key = self.key
            return new
        restored = super().from_checkpoint(checkpoint)
        new = WriteOnceChannel(keep_last, self.typ, snapshot_frequency=self.snapshot_frequency)
        new.key, new.value = self.key, restored.value
        return new

    def update(self, values: Sequence[Any]) -> bool:
        if not values:
            return False
        if not self.is_available():
            self.value = keep_last(None, list(values))
            return True
        return super().update(values)

    def replay_writes(self, writes: Sequence[Any]) -> None:
        values = [v for _, _, v in writes]
        if values:
            self.value = keep_last(None, values)


class IterationRecord(TypedDict):
    """One loop turn as stored in ``history`` (``rlm_engine.types.Iteration.to_dict()``).

    ``response`` is the root LM's text, ``code_blocks`` what each block ran and printed
    (``code``, ``stdout``, ``stderr``, ``error``, ``subcalls``), ``feedback`` the REPL
    output sent back to the root LM.
    """

    index: int
    response: str
    code_blocks: list[dict[str, Any]]
    final_answer: str | None
    feedback: str
    input_tokens: int
    output_tokens: int
    cost: float | None
    root_latency: float
    duration: float


class RLMGraphState(TypedDict, total=False):
    """State of :func:`~rlm_integrations.langgraph.build_rlm_graph`.

    Input: ``context`` (any value the REPL should hold as ``context``) or ``context_ref``
    (where the server reads it), and ``query``.
    Output: ``final_answer``, ``status``, ``usage`` and the full ``history``.
    """

    #: The long input. Written once; no later checkpoint contains it again.
    context: Annotated[Any, WriteOnceChannel()]
    #: Where the context is instead (a file the server reads, or a LangGraph store item;
    #: see :mod:`rlm_integrations.langgraph.context_ref`): a few bytes in each checkpoint,
    #: read only when a REPL is built. Wins over ``context`` when set.
    context_ref: ContextRef | None
    #: The question; None when the task is stated inside the context.
    query: str | None
    #: Engine run id (``RLMState.run_id``); keys the live REPL session of this run.
    run_id: str
    #: The thread's conversation: a new query with the same context continues in the same
    #: REPL (variables from earlier runs are there); a new context starts another.
    conversation_id: str
    #: SHA-256 of the context the conversation was built on (a changed context starts anew).
    context_sha: str
    #: The conversation's finished runs (``rlm_engine.conversation.Turn.to_dict()``: query,
    #: answer, variables made, and the run's state for replay); appended once per run.
    turns: Annotated[list[dict[str, Any]], DeltaChannel(append_items)]
    #: Everything the engine needs to rebuild the run besides history: system prompt,
    #: first user message, context description, depth, start time. Written once per run.
    run: Annotated[dict[str, Any], WriteOnceChannel()]
    #: Number of finished iterations (``len(history)``).
    iteration: int
    #: One ``IterationRecord`` per finished iteration; each ``execute`` appends one.
    history: Annotated[list[IterationRecord], DeltaChannel(append_items)]
    #: Root LM response waiting for ``execute`` (what ``interrupt_before`` shows).
    pending_response: str | None
    #: Tokens, cost and latency of the root call behind ``pending_response``.
    pending_usage: dict[str, Any] | None
    #: The latest compaction of the root's history (``rlm_engine.compaction``): iterations
    #: ``1..upto`` are folded into ``summary`` in the root's prompt; ``history`` keeps all.
    compaction: dict[str, Any] | None
    #: The answer, set by FINAL / FINAL_VAR.
    final_answer: str | None
    #: Best answer when the run ended without FINAL (max_iterations, budget, timeout).
    partial_answer: str | None
    #: None while running; then final | max_iterations | budget | timeout | error.
    status: str | None
    #: What went wrong, for every status but final.
    error: str | None
    #: Which path answered, with ``mode`` "direct"/"auto" (``rlm_integrations.langgraph.
    #: route``): "direct" (one LM call, no REPL) or "rlm" (the loop); None in mode "rlm".
    path: str | None
    #: Why that path: the threshold and the prompt's estimated size, or the fallback.
    path_reason: str | None
    #: What the ``route`` node spent before handing over to the loop (``started_at``, the
    #: ``calls`` it started, usage ``records``: auto's refused direct attempt); the loop's
    #: run starts with them, as ``RLM.completion``'s does. None after a direct answer.
    route_spent: dict[str, Any] | None
    #: Usage totals: ``total``, ``root``, ``sub``, ``by_model``, ``by_depth``.
    usage: dict[str, Any]
    #: The usage ledger's records (model, depth, role, input, output, cost), appended per
    #: step; restores exact usage and budgets when a run is rebuilt in a new process.
    usage_records: Annotated[list[list[Any]], DeltaChannel(append_items)]


class RLMInput(TypedDict, total=False):
    """What ``invoke`` takes: the context (or ``context_ref``, where it is) and the query."""

    context: Any
    context_ref: ContextRef | None
    query: str | None


class RLMOutput(TypedDict, total=False):
    """What ``invoke`` returns."""

    final_answer: str | None
    partial_answer: str | None
    status: str | None
    error: str | None
    path: str | None
    path_reason: str | None
    usage: dict[str, Any]
    iteration: int
    history: list[IterationRecord]
    run_id: str
    query: str | None


__all__ = [
    "IterationRecord",
    "RLMGraphState",
    "RLMInput",
    "RLMOutput",
    "WriteOnceChannel",
    "append_items",
    "keep_last",
]
