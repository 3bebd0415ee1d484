"""Run an evaluation: every arm on every task, resumable, bounded in cost and concurrency.

Tasks are generated one (suite, size) cell at a time, so memory holds one cell's tasks
(three 2M-token contexts are about 24 MB of text), and every arm runs on the same tasks.
Runs go through an asyncio runner with at most ``concurrency`` in flight, which records
each run's path and sub-calls exactly; ``executor="ray"`` sends them to the batch
runner's Ray executor instead (:mod:`.on_batch`). Each finished run is appended to
``runs.jsonl`` at once; a run already recorded there is not run again (``retry_errors``
re-runs those that ended in an error).

Before anything is sent, the cost of the runs still to make is estimated and checked
against ``max_cost`` (:mod:`.cost`); while running, each run's engine budget is what is
left of ``max_cost``, and no new run starts once it is spent.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm_engine.aio import run_sync
from rlm_engine.config import RLMConfig
from rlm_engine.evals import arms as arms_mod
from rlm_engine.evals.cost import EvalEstimate, prices, run_estimate
from rlm_engine.evals.on_batch import run_on_batch
from rlm_engine.evals.records import RunLog, RunRecord, run_key
from rlm_engine.evals.suites import SUITES, generate
from rlm_engine.evals.tasks import DEFAULT_SIZES, Task, parse_size
from rlm_engine.evals.user_suite import load_suite

RUNS_FILE = "runs.jsonl"
#: Where runs go: this process's asyncio runner, or the batch runner's Ray executor.
EXECUTORS = ("local", "ray")
REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.txt"


@dataclass
class EvalSpec:
    """What to run: built-in suites at sizes, user suite files, arms, tasks per cell."""

    suites: Sequence[str] = tuple(SUITES)
    sizes: Sequence[int] = DEFAULT_SIZES  # tokens ("8k" strings are parsed too)
    arms: Sequence[str] = arms_mod.ARMS
    tasks: int = 3
    seed: int = 0
    suite_files: Sequence[str | Path] = ()

    def __post_init__(self) -> None:
        bad = [s for s in self.suites if s not in SUITES]
        if bad:
            raise ValueError(f"unknown suite(s) {bad}; built-in suites: {', '.join(SUITES)}")
        bad = [a for a in self.arms if a not in arms_mod.ARMS]
        if bad:
            raise ValueError(f"unknown arm(s) {bad}; arms: {', '.join(arms_mod.ARMS)}")
        if self.tasks < 1:
            raise ValueError(f"tasks must be at least 1, got {self.tasks}")
        if not self.arms:
            raise ValueError("no arms to run")
        self.sizes = tuple(parse_size(s) for s in self.sizes)  # "8k" or 8000; >= 256

    def cells(self) -> Iterator[tuple[str, int, Callable[[], list[Task]]]]:
        """(suite, size, tasks) cells; tasks are generated when called. A user suite's
        size is 0 here (its tasks' sizes are their own)."""
        for path in self.suite_files:
            tasks = load_suite(path)  # read now: a bad file is reported before any run
            yield tasks[0].suite, 0, functools.partial(list, tasks)
        for suite in self.suites:
            for size in self.sizes:
                yield suite, size, functools.partial(_generate, suite, self.seed, size, self.tasks)


def _generate(suite: str, seed: int, size: int, tasks: int) -> list[Task]:
    return [generate(suite, seed, size, i) for i in range(tasks)]


@dataclass
class EvalResult:
    """What an evaluation produced."""

    records: list[RunRecord]
    ran: int
    resumed: int
    estimate: EvalEstimate
    spent: float | None
    out_dir: Path
    stopped: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def runs_path(self) -> Path:
        return self.out_dir / RUNS_FILE


def _simulated(config: RLMConfig) -> bool:
    m = config.models
    return m.backend == "scripted" or str(m.model or "").startswith("scripted")


def _meta(spec: EvalSpec, config: RLMConfig, window: arms_mod.Window) -> dict[str, Any]:
    m = config.models
    backend = m.backend if isinstance(m.backend, str) else type(m.backend).__name__
    kwargs = m.backend_kwargs or {}
    return {
        "type": "meta",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "backend": backend,
        "model": m.model or kwargs.get("model_name"),
        "sub_model": m.sub_model or (m.sub_backend_kwargs or {}).get("model_name"),
        "simulated": _simulated(config) or str(kwargs.get("model_name", "")).startswith("scripted"),
        "window": window.tokens,
        "window_source": window.source,
        "suites": list(spec.suites),
        "sizes": list(spec.sizes),
        "arms": list(spec.arms),
        "tasks": spec.tasks,
        "seed": spec.seed,
    }


def _todo(task: Task, arms: Sequence[str], done: dict[str, RunRecord], retry: bool) -> list[str]:
    out = []
    for arm in arms:
        rec = done.get(run_key(arm, task.suite, task.size, task.seed, task.index))
        if rec is None or (retry and rec.status == "error"):
            out.append(arm)
    return out


def _estimate(
    spec: EvalSpec,
    config: RLMConfig,
    window: arms_mod.Window,
    done: dict[str, RunRecord],
    retry: bool,
) -> EvalEstimate:
    p = prices(config)
    est = EvalEstimate(unknown_prices=p.unknown)
    threshold = _auto_threshold(config, window)
    for suite, size, make in spec.cells():
        if size:  # built-in: the tasks' sizes are known without generating them
            keys = [(suite, size, i) for i in range(spec.tasks)]
        else:
            keys = [(t.suite, t.size, t.index) for t in make()]
        for s, n, i in keys:
            for arm in spec.arms:
                rec = done.get(run_key(arm, s, n, spec.seed if size else 0, i))
                if rec is not None and not (retry and rec.status == "error"):
                    continue
                prompt = arms_mod.size_prompt_tokens(n)
                direct = arm == "direct" or (arm == "auto" and prompt <= threshold)
                if direct and prompt > window.tokens:
                    est.runs += 1  # over the window: not sent, costs nothing
                    continue
                tokens, cost = run_estimate(arm, n, p, direct=direct)
                est.add(arm, tokens, cost)
    return est


def _auto_threshold(config: RLMConfig, window: arms_mod.Window) -> int:
    """The prompt size under which the auto arm answers directly (the engine's rule)."""
    run = config.run
    return run.direct_threshold_tokens or int(run.direct_threshold * window.tokens)


async def arun_eval(
    spec: EvalSpec,
    config: RLMConfig,
    out_dir: str | Path,
    *,
    max_cost: float | None = 5.0,
    concurrency: int = 4,
    retry_errors: bool = False,
    dry_run: bool = False,
    executor: str = "local",
    on_record: Callable[[RunRecord, int, int], None] | None = None,
    on_estimate: Callable[[EvalEstimate], None] | None = None,
) -> EvalResult:
    """Run ``spec`` with ``config``; records go to ``out_dir/runs.jsonl``.

    Raises :class:`~.cost.CostGuardError` before sending anything when the estimate of the
    runs still to make is over ``max_cost`` (or a price is unknown and ``max_cost`` is
    set). ``dry_run`` stops after the estimate. ``on_record(record, done, total)`` is
    called as each run ends. ``executor``: ``"local"`` (this process's asyncio runner) or
    ``"ray"`` (the batch runner's Ray executor, :mod:`.on_batch`).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    out = Path(out_dir)
    log = RunLog(out / RUNS_FILE)
    _, done = log.read()
    window = await arms_mod.root_window(config)
    estimate = _estimate(spec, config, window, done, retry_errors)
    if on_estimate is not None:
        on_estimate(estimate)
    estimate.check(max_cost)
    meta = _meta(spec, config, window)
    result = EvalResult([], 0, 0, estimate, None, out, meta=meta)
    if dry_run:
        return result
    log.append(meta)
    sem = asyncio.Semaphore(concurrency)
    spent: list[float] = []
    stopped: list[str] = []
    total = estimate.runs
    finished = 0

    def budgeted() -> RLMConfig | None:
        """The config of the next run, its engine budget what is left; None: spent."""
        left = None if max_cost is None else max_cost - sum(spent)
        if left is None:
            return config
        if left <= 0:
            if not stopped:
                stopped.append(f"max_cost ${max_cost:g} spent; later runs were not started")
            return None
        return config.replace(max_cost=min(left, config.run.max_cost or left))

    def keep(rec: RunRecord) -> None:
        nonlocal finished
        if rec.cost:
            spent.append(rec.cost)
        log.append(rec.to_dict())
        result.records.append(rec)
        finished += 1
        if on_record is not None:
            on_record(rec, finished, total)

    async def one(arm: str, task: Task) -> None:
        async with sem:
            cfg = budgeted()
            if cfg is None:
                return
            rec = await arms_mod.run_arm(arm, task, cfg, window)
        keep(rec)

    async def run_all() -> None:
        for _suite, _size, make in spec.cells():
            tasks = make()
            todo = {task.index: _todo(task, spec.arms, done, retry_errors) for task in tasks}
            result.resumed += sum(len(spec.arms) - len(arms) for arms in todo.values())
            if executor == "local":
                await asyncio.gather(*(one(arm, t) for t in tasks for arm in todo[t.index]))
            else:
                for arm in spec.arms:
                    batch = [t for t in tasks if arm in todo[t.index]]
                    cfg = budgeted() if batch else None
                    if cfg is None:
                        continue
                    for rec in await run_on_batch(
                        arm, batch, cfg, window, executor=executor, concurrency=concurrency
                    ):
                        keep(rec)
            if stopped:
                return

    if executor == "ray":  # one cluster for every batch (each would start its own)
        from rlm_engine.batch.ray_executor import cluster

        with cluster(None):
            await run_all()
    else:
        await run_all()
    result.ran = len(result.records)
    result.spent = sum(spent) if spent or max_cost is not None else None
    result.stopped = stopped[0] if stopped else None
    _, all_done = log.read()
    result.records = _current(spec, all_done)
    return result


def _current(spec: EvalSpec, done: dict[str, RunRecord]) -> list[RunRecord]:
    """The records of this spec (a shared output directory may hold others)."""
    wanted_suites = set(spec.suites)
    sizes = set(spec.sizes)
    user = {Path(p).stem for p in spec.suite_files}
    return [
        r
        for r in done.values()
        if r.arm in spec.arms
        and (
            (
                r.suite in wanted_suites
                and r.size in sizes
                and r.seed == spec.seed
                and r.index < spec.tasks
            )
            or r.suite in user
        )
    ]


def run_eval(spec: EvalSpec, config: RLMConfig, out_dir: str | Path, **kwargs: Any) -> EvalResult:
    """Sync form of :func:`arun_eval` (also works inside a running event loop)."""
    return run_sync(arun_eval(spec, config, out_dir, **kwargs))


__all__ = [
    "REPORT_FILE",
    "RUNS_FILE",
    "SUMMARY_FILE",
    "EvalResult",
    "EvalSpec",
    "arun_eval",
    "run_eval",
]
