"""Host side shared by the remote sandboxes (``modal``, ``prime``, ``e2b``).

``WorkerEnvironment`` already owns everything about a worker: handshake, cells, host
calls, the interrupt-then-kill timeout ladder, crash restarts. A remote environment only
says how to get a worker: create a sandbox (bounded by ``create_timeout``, terminated even
if the completion is cancelled while it is being made), upload the context file once, start
the worker over the provider's exec streams (``transport.RemoteChannel``). Killing the
worker terminates its sandbox; a restart gets a fresh one.

Not enforced by the host here, unlike the local kinds: ``disk_mb`` (the provider's disk
bounds the work dir; ``file_size_mb`` still caps each file), Landlock (``landlock=True`` is
refused) and reaping a cell's background processes (they end with the sandbox).
"""

from __future__ import annotations

import asyncio
import atexit
import importlib
import math
import secrets
from abc import abstractmethod
from types import ModuleType
from typing import Any, ClassVar

from rlm_engine.environments.bootstrap import worker_command
from rlm_engine.environments.channel import WorkerChannel
from rlm_engine.environments.isolation import WorkArea, minimal_env
from rlm_engine.environments.remote.transport import (
    RemoteChannel,
    RemoteSandbox,
    terminate_leftovers,
    terminate_sandbox,
    track,
)
from rlm_engine.environments.worker_env import WorkerEnvironment

_MB = 1024 * 1024

atexit.register(terminate_leftovers)


class MissingCredentialsError(RuntimeError):
    """The provider's SDK is installed but no credentials were found."""


def import_sdk(module: str, *, kind: str, extra: str) -> ModuleType:
    """The provider's SDK, or an error naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise RuntimeError(
            f"The {kind} environment needs the {module!r} package: "
            f"pip install 'rlm-integrations[{extra}]'."
        ) from None


class RemoteEnvironment(WorkerEnvironment):
    """The worker in a cloud sandbox. Extra keywords (every remote kind):

    ``image`` (an image or template with ``python3``; empty: the provider's default below),
    ``python`` (interpreter in it), ``cpus``, ``sandbox_timeout`` (seconds the provider lets
    the sandbox live, enforced on its side, so even a host that dies cannot leave one
    running and billing past it), ``create_timeout`` (seconds to create a sandbox and
    upload the context). ``memory_mb`` also sizes the sandbox where the provider takes a
    memory request (``memory_mb`` + twice the context + 512 MB).
    """

    disk_limited_by_mount = True  # the host cannot measure a remote disk; see module doc

    #: The provider's default image (or template) when ``image`` is empty.
    default_image: ClassVar[str] = "python:3.12-slim"

    def __init__(
        self,
        *args: Any,
        image: str = "",
        python: str = "python3",
        cpus: float | None = None,
        sandbox_timeout: int = 3600,
        create_timeout: float = 600.0,
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        if sandbox_timeout < 60:
            raise ValueError(f"sandbox_timeout must be at least 60 seconds, got {sandbox_timeout}")
        if create_timeout <= 0:
            raise ValueError(f"create_timeout must be positive, got {create_timeout}")
        self.image = image or self.default_image
        self.python = python
        self.cpus = cpus
        self.sandbox_timeout = sandbox_timeout
        self.create_timeout = create_timeout
        #: Where the worker's files live inside the sandbox (the sandbox is ours alone; the
        #: unique name also lets a stand-in for the cloud use the same path locally).
        self.remote_root = f"/tmp/rlm-remote-{secrets.token_hex(6)}"
        #: Every sandbox this environment created (restarts add one), for audits.
        self.sandbox_ids: list[str] = []

    # -- what each provider implements ----------------------------------------------
    @abstractmethod
    async def _create_sandbox(self, area: WorkArea) -> RemoteSandbox:
        """Create and wait for a running sandbox; terminate it yourself if that fails."""

    # -- WorkerEnvironment hooks ------------------------------------------------------
    @property
    def work_dir(self) -> str:
        return f"{self.remote_root}/work"

    @property
    def context_path(self) -> str:
        # Beside the root, not in it: /tmp exists in every image, so no upload API needs
        # to create parent directories.
        return f"{self.remote_root}.context"

    def _choose_uid(self) -> int | None:
        return None  # the sandbox is the isolation boundary, not a host uid

    def _reap_policy(self) -> str:
        return "none"  # kill(-1) as the sandbox's root would take its init down

    def _context_path_in_worker(self, area: WorkArea) -> str | None:
        return self.context_path if area.context_file else None

    def sandbox_memory_mb(self, area: WorkArea) -> int:
        """The memory to request: REPL allowance, the context loaded (twice, as text and
        while parsing), and the interpreter."""
        return self.memory_mb + 2 * math.ceil(area.context_bytes / _MB) + 512

    def worker_argv(self) -> list[str]:
        """The worker's command in the sandbox: make the work dir, enter it, start."""
        script = 'mkdir -p "$0" && cd "$0" && exec "$@"'
        return ["sh", "-c", script, self.work_dir, *worker_command(self.python)]

    async def _open_channel(self, area: WorkArea) -> WorkerChannel:
        sandbox = await self._create_bounded(area)
        try:
            if area.context_file is not None:
                await asyncio.wait_for(
                    sandbox.upload(area.context_file, self.context_path), self.create_timeout
                )
            env = minimal_env(self.work_dir, self.extra_env)
            return await RemoteChannel.open(sandbox, self.worker_argv(), env, self.python)
        except BaseException:
            await terminate_sandbox(sandbox)
            raise

    async def _create_bounded(self, area: WorkArea) -> RemoteSandbox:
        """``_create_sandbox`` within ``create_timeout``; a sandbox that arrives after we
        gave up (timeout, cancellation) is terminated when it does."""
        task = asyncio.ensure_future(self._create_sandbox(area))
        try:
            sandbox = await asyncio.wait_for(asyncio.shield(task), self.create_timeout)
        except BaseException as e:
            task.add_done_callback(_terminate_late)
            if isinstance(e, TimeoutError):
                raise RuntimeError(
                    f"The {self.kind} sandbox was not running within create_timeout="
                    f"{self.create_timeout:g} s (a first use of an image can take longer "
                    "while the provider builds it: raise create_timeout)."
                ) from None
            raise
        track(sandbox)
        self.sandbox_ids.append(sandbox.sandbox_id)
        return sandbox


def _terminate_late(task: asyncio.Future[RemoteSandbox]) -> None:
    if task.cancelled() or task.exception() is not None:
        return
    sandbox = task.result()
    track(sandbox)  # interpreter exit gets it should the loop end first
    asyncio.ensure_future(terminate_sandbox(sandbox))


__all__ = ["MissingCredentialsError", "RemoteEnvironment", "import_sdk"]
