"""The Ray executor: one Ray task per row, on a local cluster or an existing one.

The driver (this process) keeps ``concurrency`` tasks in flight, receives each row's
:class:`RowResult` and writes it (only the driver writes, so a retried task cannot write
twice). A task whose worker dies (killed, out of memory, node lost) is retried by Ray
(:data:`TASK_RETRIES`); a row's own failure is a result, never retried. Inline contexts go
to Ray's object store once (``ray.put``) and the task receives the reference, so a retry
never re-sends them; a ``context_path`` is read by the worker, on its node (a shared file
system on a cluster). The config travels once the same way.

The LM rate limit is one actor (:class:`RateLimiterActor`) holding the same
:class:`~rlm_engine.clients.rate_limit.RateSchedule` as the local limiter; every task's
clients reserve from it, so the limit holds for the whole cluster.

``address=None`` joins the cluster this process already joined (``ray.init`` done by the
caller), else starts a local one (stopped at the end); ``"auto"`` or ``"ray://host:10001"``
joins an existing cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

try:
    import ray
except ImportError as e:  # pragma: no cover - ray is an extra
    raise ImportError("executor='ray' needs Ray: pip install 'rlm-integrations[ray]'") from e

from rlm_engine.batch.complete import complete_row
from rlm_engine.batch.progress import BatchProgress, BatchSummary
from rlm_engine.batch.results import RowResult
from rlm_engine.batch.rows import BatchRow
from rlm_engine.clients.rate_limit import RateLimits, RateSchedule
from rlm_engine.config import RLMConfig
from rlm_engine.logger import RLMLogger

#: CPUs one row's task asks for: a completion mostly waits on the LM, so many share a CPU;
#: the driver bounds how many run at once (``concurrency``).
TASK_CPUS = 0.1
#: Times Ray reruns a row whose worker died before it returned.
TASK_RETRIES = 3
#: CPUs of a local cluster started here (at most this machine's).
LOCAL_CLUSTER_CPUS = 4


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class RateLimiterActor:
    """The cluster's one LM rate schedule; its methods run one at a time."""

    def __init__(self, limits: RateLimits) -> None:
        self.schedule = RateSchedule(limits)

    def reserve(self, model: str, tokens: int) -> float:
        return self.schedule.reserve(model, tokens, time.monotonic())

    def settle(self, model: str, extra_tokens: int) -> None:
        self.schedule.settle(model, extra_tokens)

    def back_off(self, model: str, seconds: float) -> None:
        self.schedule.back_off(model, seconds, time.monotonic())


class RayRateLimiter:
    """The :class:`~rlm_engine.clients.rate_limit.RateLimiter` interface over the actor."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    async def acquire(self, model: str, tokens: int) -> None:
        wait = await self.actor.reserve.remote(model, tokens)
        if wait > 0:
            await asyncio.sleep(wait)

    async def settle(self, model: str, extra_tokens: int) -> None:
        await self.actor.settle.remote(model, extra_tokens)

    async def back_off(self, model: str, seconds: float) -> None:
        await self.actor.back_off.remote(model, seconds)


@dataclass(frozen=True)
class _LoggerSpec:
    """An ``RLMLogger`` as it travels to workers (the logger holds a lock): its directory,
    made again in each worker, so traces land where the user asked (shared storage on a
    cluster)."""

    log_dir: str
    secrets: tuple[str, ...]

    def make(self) -> RLMLogger:
        return RLMLogger(self.log_dir, secrets=list(self.secrets))


def portable(config: RLMConfig) -> RLMConfig:
    """``config`` in a form Ray can send to workers (an ``RLMLogger`` as its spec)."""
    logger = config.observe.logger
    if type(logger) is RLMLogger:
        spec = _LoggerSpec(str(logger.log_dir), tuple(logger.extra_secrets))
        return config.replace(logger=spec)
    return config


def _in_worker(config: RLMConfig) -> RLMConfig:
    logger = config.observe.logger
    return config.replace(logger=logger.make()) if isinstance(logger, _LoggerSpec) else config


@ray.remote(max_retries=TASK_RETRIES, retry_exceptions=False)
def _run_row(row: BatchRow, context: Any, config: RLMConfig, limiter: Any) -> RowResult:
    """One row in a Ray worker (``context`` is resolved from the object store)."""
    given = {} if row.context_path is not None else {"context": context}
    shared = RayRateLimiter(limiter) if limiter is not None else None
    return asyncio.run(complete_row(row, _in_worker(config), shared, **given))


def _put_config(config: RLMConfig) -> Any:
    try:
        return ray.put(portable(config))
    except TypeError as e:
        raise ValueError(
            "the configuration cannot be sent to Ray workers (it holds an object that "
            f"cannot be pickled: {e}); give the backend by name, or use executor='local'"
        ) from None


@contextlib.contextmanager
def _workers_run_this_python() -> Iterator[None]:
    """Workers of a cluster started here run this interpreter and environment.

    Under ``uv run`` Ray (2.45+) otherwise starts each worker with ``uv run`` in an upload
    of the working directory, which builds a new environment (and needs the network).
    """
    try:
        from ray._private import ray_constants
    except ImportError:  # pragma: no cover - a Ray without the hook
        yield
        return
    old = getattr(ray_constants, "RAY_ENABLE_UV_RUN_RUNTIME_ENV", None)
    ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = False
    try:
        yield
    finally:
        if old is not None:
            ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = old


@contextlib.contextmanager
def cluster(address: str | None, *, workers: int = 16) -> Iterator[float]:
    """Join or start a Ray cluster for the batch; yields the seconds that took. A cluster
    this function started (or joined) is left at the end; one the caller joined is kept.

    A local cluster keeps ``workers`` worker processes alive between tasks and may start
    them all at once (Ray keeps and starts one per CPU by default and stops the others
    when idle, so LM-bound rows at more than one per CPU would start a new Python worker
    for most rows).
    """
    if ray.is_initialized():
        yield 0.0
        return
    started = time.monotonic()
    quiet: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False}
    if address is None:
        with _workers_run_this_python():
            ray.init(
                num_cpus=min(os.cpu_count() or 1, LOCAL_CLUSTER_CPUS),
                include_dashboard=False,
                _system_config={
                    "num_workers_soft_limit": workers,
                    "worker_maximum_startup_concurrency": workers,
                },
                **quiet,
            )
    else:
        ray.init(address=address, **quiet)
    try:
        yield time.monotonic() - started
    finally:
        ray.shutdown()


def run_ray(
    rows: Sequence[BatchRow],
    config: RLMConfig,
    *,
    address: str | None,
    concurrency: int,
    limits: RateLimits,
    on_result: Callable[[RowResult], None],
    summary: BatchSummary,
    display: BatchProgress,
) -> None:
    """Run ``rows`` as Ray tasks; ``on_result`` gets one result per row, as they finish."""
    if display.enabled and not ray.is_initialized():
        where = (
            f"joining the Ray cluster at {address}" if address else "starting a local Ray cluster"
        )
        display.console.print(f"rlm: batch: {where} ...", highlight=False)
    with cluster(address, workers=concurrency) as startup:
        summary.startup_seconds = startup
        actor = RateLimiterActor.remote(limits) if limits else None  # type: ignore[attr-defined]
        config_ref = _put_config(config)
        pending = iter(rows)
        in_flight: dict[Any, BatchRow] = {}

        def submit() -> bool:
            row = next(pending, None)
            if row is None:
                return False
            context = ray.put(row.context) if row.context is not None else None
            ref = _run_row.options(num_cpus=TASK_CPUS).remote(
                row.without_context(), context, config_ref, actor
            )
            in_flight[ref] = row
            return True

        try:
            with display:
                started = time.monotonic()
                while len(in_flight) < concurrency and submit():
                    pass
                while in_flight:
                    ready, _ = ray.wait(list(in_flight), num_returns=1)
                    for ref in ready:
                        row = in_flight.pop(ref)
                        try:
                            result = ray.get(ref)
                        except Exception as e:  # retries exhausted: the row's error
                            result = RowResult.failed(row, e)
                        on_result(result)
                        submit()
                summary.wall_seconds = time.monotonic() - started
        finally:
            for ref in in_flight:  # interrupted: stop what is still running
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            if actor is not None:
                with contextlib.suppress(Exception):
                    ray.kill(actor)


__all__ = ["RateLimiterActor", "RayRateLimiter", "cluster", "run_ray"]
