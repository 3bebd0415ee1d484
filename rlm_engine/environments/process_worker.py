"""Workers that are child processes of the host: the base of ``subprocess`` and ``sandbox``.

What the two share: an interpreter the worker uid can run, a command line built from the
work area (``_spawn_args``), clean-up of whatever is left under the worker's uid, and
start-up from a worker started ahead of time (``warm.py``) when one is ready.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, NamedTuple

from rlm_engine.environments.channel import ProcessChannel, WorkerChannel
from rlm_engine.environments.isolation import (
    WorkArea,
    find_interpreter,
    is_root,
    kill_uid_processes,
)
from rlm_engine.environments.warm import WarmWorker, warm_pool
from rlm_engine.environments.worker_env import WorkerEnvironment


class SpawnArgs(NamedTuple):
    argv: list[str]
    env: dict[str, str]
    cwd: str


class ProcessWorkerEnvironment(WorkerEnvironment):
    """Extra keyword: ``python`` (interpreter path; default: the host's, or a same-version
    system python3 when the worker runs under its own uid)."""

    #: False for a worker that must start cold (the probe, which makes no demand).
    use_warm_pool = True

    def __init__(self, *args: Any, python: str | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.python = python
        self._interpreter: str | None = None

    def interpreter(self) -> str:
        if self._interpreter is None:
            # The worker gets a uid of its own exactly when the host is root.
            self._interpreter = find_interpreter(self.python, for_other_uid=is_root())
        return self._interpreter

    @abstractmethod
    def _spawn_args(self, area: WorkArea) -> SpawnArgs:
        """The worker's command line, environment and cwd for this work area."""

    def warm_key(self) -> tuple[Any, ...]:
        """What a worker started ahead of time must share with this one to stand in for it:
        everything that shapes the process before ``init`` (limits, Landlock, the context
        and the setup all come with ``init``)."""
        return (type(self), self.interpreter(), tuple(sorted(self.extra_env.items())))

    def _take_warm(self) -> WarmWorker | None:
        return warm_pool.take(self) if self.use_warm_pool else None

    async def _open_channel(self, area: WorkArea) -> WorkerChannel:
        spawn = self._spawn_args(area)
        return await ProcessChannel.spawn(spawn.argv, env=spawn.env, cwd=spawn.cwd, uid=self.uid)

    async def _attach_warm(self, warm: WarmWorker) -> WorkerChannel:
        return await ProcessChannel.attach(warm.proc)

    async def _after_terminate(self) -> None:
        if self.uid is not None:
            await kill_uid_processes(self.uid, self.interpreter())


__all__ = ["ProcessWorkerEnvironment", "SpawnArgs"]
