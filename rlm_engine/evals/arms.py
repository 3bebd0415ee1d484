"""The arms an evaluation compares, each run on the same tasks:

- ``direct``: the whole context and the query in one LM call. Marked ``over_window``
  and not sent when the prompt does not fit the root model's window;
- ``rlm``: the RLM loop at depth 1 (sub-calls are plain LM calls);
- ``rlm-d2``: the loop at depth 2 (``rlm_query`` starts child RLMs);
- ``auto``: ``mode="auto"``: direct under the threshold, the loop above it; the record
  says which path ran and why.

``direct`` and ``auto`` run through the engine's own ``mode`` option (``RLM(...,
mode=...)``, :mod:`rlm_engine.direct`) when this version of the engine has it; before
that, ``direct`` is one plain call through the engine's clients and ``auto`` routes in
the harness with the same rule (a share of the window).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rlm_engine.clients.configured import make_clients
from rlm_engine.config import OPTION_GROUP, RLMConfig
from rlm_engine.evals.records import RunRecord
from rlm_engine.evals.scorers import score
from rlm_engine.evals.tasks import Task
from rlm_engine.windows import CHARS_PER_TOKEN, known_window

ARMS = ("direct", "rlm", "rlm-d2", "auto")
#: Whether the engine has ``mode`` (the direct path and auto routing) to run arms on.
HAS_MODE = "mode" in OPTION_GROUP
#: auto's share of the window when the engine has no ``mode`` option yet.
FALLBACK_THRESHOLD = 0.25
#: The plain direct call's system prompt (used only when the engine has no ``mode``).
DIRECT_SYSTEM = (
    "You answer a request about the context the user gives you. Read all of the context "
    "and answer from it; if it does not hold the answer, say so. Reply with the answer "
    "itself, without preamble."
)
#: Tokens a direct prompt adds to the context: instructions, framing, the query.
PROMPT_OVERHEAD_TOKENS = 200


@dataclass(frozen=True)
class Window:
    """The root model's input window in tokens, and where the number came from."""

    tokens: int
    source: str


async def root_window(config: RLMConfig) -> Window:
    """The root model's window, as the engine resolves it: configured, a known model's,
    else the client's own (which is what the scripted clients report)."""
    if config.history.root_context_window:
        return Window(config.history.root_context_window, "root_context_window")
    known = known_window(config.models.model)
    if known:
        return Window(known, f"the published window of {config.models.model}")
    root, sub = make_clients(config)
    try:
        known = known_window(root.model_name)
        if known:
            return Window(known, f"the published window of {root.model_name}")
        return Window(int(root.context_chars / CHARS_PER_TOKEN), f"{type(root).__name__}'s own")
    finally:
        await root.aclose()
        if sub is not root:
            await sub.aclose()


def direct_prompt_tokens(task: Task) -> int:
    """The direct prompt's size, estimated as the engine does (3.5 characters per token,
    on the safe side)."""
    return int((task.context_chars + len(task.query)) / CHARS_PER_TOKEN) + PROMPT_OVERHEAD_TOKENS


def arm_config(arm: str, config: RLMConfig) -> RLMConfig:
    """The engine configuration an arm runs with."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; arms: {', '.join(ARMS)}")
    depth = 2 if arm == "rlm-d2" else 1
    changes: dict[str, Any] = {"max_depth": max(depth, 1)}
    if HAS_MODE:
        changes["mode"] = {"direct": "direct", "auto": "auto"}.get(arm, "rlm")
    return config.replace(**changes)


def _record(arm: str, task: Task, **fields: Any) -> RunRecord:
    return RunRecord(
        arm, task.suite, task.size, task.seed, task.index, expected=task.answer, **fields
    )


def _finish(rec: RunRecord, task: Task) -> RunRecord:
    rec.score = score(rec.answer, task) if rec.status != "over_window" else 0.0
    return rec


async def run_arm(arm: str, task: Task, config: RLMConfig, window: Window) -> RunRecord:
    """Run one arm on one task; never raises for a failed run (it is a record)."""
    cfg = arm_config(arm, config)
    started = time.perf_counter()
    wants_direct = arm == "direct" or (arm == "auto" and not HAS_MODE and _fits(cfg, task, window))
    if wants_direct and direct_prompt_tokens(task) > window.tokens:
        return _finish(
            _record(
                arm,
                task,
                status="over_window",
                path="direct",
                path_reason=(
                    f"~{direct_prompt_tokens(task):,} tokens do not fit the window of "
                    f"{window.tokens:,} ({window.source}); not sent"
                ),
            ),
            task,
        )
    try:
        if wants_direct and not HAS_MODE:
            rec = await _plain_direct(arm, task, cfg)
        else:
            rec = await _engine(arm, task, cfg)
            if arm == "auto" and not HAS_MODE:
                rec.path_reason = f"over {FALLBACK_THRESHOLD:g} of the window: the RLM loop"
    except Exception as e:  # a run that fails is a result, not the end of the evaluation
        rec = _record(arm, task, status="error", error=f"{type(e).__name__}: {e}")
    rec.latency = round(time.perf_counter() - started, 4)
    return _finish(rec, task)


def _fits(cfg: RLMConfig, task: Task, window: Window) -> bool:
    return direct_prompt_tokens(task) <= FALLBACK_THRESHOLD * window.tokens


async def _engine(arm: str, task: Task, cfg: RLMConfig) -> RunRecord:
    from rlm_engine import RLM

    res = await RLM(cfg).acompletion(task.context, task.query)
    usage = res.usage
    models = list(usage.by_model())
    return _record(
        arm,
        task,
        status=res.status,
        answer=res.answer,
        input_tokens=usage.total.input_tokens,
        output_tokens=usage.total.output_tokens,
        cost=usage.total.cost,
        iterations=len(res.iterations),
        sub_calls=usage.sub.calls,
        path=str(getattr(res, "path", "rlm")),
        path_reason=str(getattr(res, "path_reason", "")),
        error=res.error,
        model=models[0] if models else "",
    )


async def _plain_direct(arm: str, task: Task, cfg: RLMConfig) -> RunRecord:
    """One LM call with the whole context (until the engine has ``mode="direct"``)."""
    root, sub = make_clients(cfg)
    context = task.context if isinstance(task.context, str) else "\n\n".join(task.context)
    messages = [
        {"role": "system", "content": DIRECT_SYSTEM},
        {"role": "user", "content": f"<context>\n{context}\n</context>\n\nRequest: {task.query}"},
    ]
    try:
        resp = await root.acomplete(messages, timeout=cfg.reply.timeout)
    finally:
        await root.aclose()
        if sub is not root:
            await sub.aclose()
    return _record(
        arm,
        task,
        status="final",
        answer=resp.text,
        input_tokens=resp.input_tokens,
        output_tokens=resp.output_tokens,
        cost=resp.cost,
        path="direct",
        path_reason="one LM call" if arm == "direct" else "auto: fits under the threshold",
        model=resp.model,
    )


__all__ = [
    "ARMS",
    "HAS_MODE",
    "Window",
    "arm_config",
    "direct_prompt_tokens",
    "root_window",
    "run_arm",
]
