"""The arms an evaluation compares, each run on the same tasks:

- ``direct``: the whole context and the query in one LM call (``mode="direct"``). Marked
  ``over_window`` and not sent when the prompt does not fit the root model's window;
- ``rlm``: the RLM loop at depth 1 (sub-calls are plain LM calls);
- ``rlm-d2``: the loop at depth 2 (``rlm_query`` starts child RLMs);
- ``auto``: ``mode="auto"``: direct under the threshold (``direct_threshold`` or
  ``direct_threshold_tokens`` of the config), the loop above it; the record says which
  path ran and why.

Every arm is an ordinary completion of the engine (``RLM(config).acompletion``) with the
arm's ``mode`` and ``max_depth``; the direct prompt, its size estimate and the window are
the engine's own (:mod:`rlm_engine.direct`), so the harness measures what users run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rlm_engine import direct, windows
from rlm_engine.clients.configured import make_clients
from rlm_engine.config import RLMConfig
from rlm_engine.evals.records import RunRecord
from rlm_engine.evals.scorers import score
from rlm_engine.evals.tasks import CHARS_PER_TOKEN, Task

ARMS = ("direct", "rlm", "rlm-d2", "auto")
_MODE = {"direct": "direct", "rlm": "rlm", "rlm-d2": "rlm", "auto": "auto"}


@dataclass(frozen=True)
class Window:
    """The root model's input window in tokens, and where the number came from."""

    tokens: int
    source: str


async def root_window(config: RLMConfig) -> Window:
    """The root model's window as the engine resolves it (``direct.root_window``):
    configured, a known model's, else the client's own (what the scripted clients say)."""
    root, sub = make_clients(config)
    try:
        tokens, known = direct.root_window(config, root, config.models.model)
        if config.history.root_context_window:
            source = "root_context_window"
        elif known:
            source = f"the published window of {config.models.model or root.model_name}"
        else:
            source = f"{type(root).__name__}'s own estimate"
        return Window(tokens, source)
    finally:
        await root.aclose()
        if sub is not root:
            await sub.aclose()


def direct_prompt_tokens(task: Task) -> int:
    """The direct prompt's size, measured as the engine measures it before a direct call
    (``rlm_engine.direct.plan``)."""
    chars = direct.prompt_chars(task.context, task.query)
    return int(chars / windows.CHARS_PER_TOKEN) + 2 * windows.TOKENS_PER_MESSAGE


def size_prompt_tokens(size: int) -> int:
    """The engine's estimate of a direct prompt over a context of ``size`` suite tokens
    (the suites count 4 characters per token, the engine 3.5, on the safe side)."""
    return int(size * CHARS_PER_TOKEN / windows.CHARS_PER_TOKEN) + 100


def arm_config(arm: str, config: RLMConfig) -> RLMConfig:
    """The engine configuration an arm runs with."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; arms: {', '.join(ARMS)}")
    return config.replace(mode=_MODE[arm], max_depth=2 if arm == "rlm-d2" else 1)


def over_window(arm: str, task: Task, window: Window) -> RunRecord | None:
    """The record of a direct run that does not fit (not sent), else None."""
    if arm != "direct":
        return None
    tokens = direct_prompt_tokens(task)
    if tokens <= window.tokens:
        return None
    rec = _record(arm, task, status="over_window", path="direct")
    rec.path_reason = (
        f"~{tokens:,} tokens do not fit the window of {window.tokens:,} ({window.source}); not sent"
    )
    return rec


def _record(arm: str, task: Task, **fields: Any) -> RunRecord:
    return RunRecord(
        arm, task.suite, task.size, task.seed, task.index, expected=task.answer, **fields
    )


async def run_arm(arm: str, task: Task, config: RLMConfig, window: Window) -> RunRecord:
    """Run one arm on one task; never raises for a failed run (it is a record)."""
    skipped = over_window(arm, task, window)
    if skipped is not None:
        return skipped
    from rlm_engine import RLM

    started = time.perf_counter()
    try:
        res = await RLM(arm_config(arm, config)).acompletion(task.context, task.query)
    except Exception as e:  # a run that fails is a result, not the end of the evaluation
        rec = _record(arm, task, status="error", error=f"{type(e).__name__}: {e}")
    else:
        usage = res.usage
        models = list(usage.by_model())
        rec = _record(
            arm,
            task,
            status=res.status,
            answer=res.answer,
            input_tokens=usage.total.input_tokens,
            output_tokens=usage.total.output_tokens,
            cost=usage.total.cost,
            iterations=len(res.iterations),
            sub_calls=usage.sub.calls,
            path=res.path,
            path_reason=res.path_reason,
            error=res.error,
            model=models[0] if models else "",
        )
        rec.score = score(rec.answer, task)
    rec.latency = round(time.perf_counter() - started, 4)
    return rec


__all__ = [
    "ARMS",
    "Window",
    "arm_config",
    "direct_prompt_tokens",
    "over_window",
    "root_window",
    "run_arm",
    "size_prompt_tokens",
]
