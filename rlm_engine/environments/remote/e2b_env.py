"""``e2b``: the worker in an E2B sandbox, over a background command's stdin and stdout.

``pip install 'rlm-integrations[e2b]'`` and ``E2B_API_KEY``. The sandbox: template
``image`` (default ``base``, which has ``python3``), ``allow_internet_access=False``,
``timeout=sandbox_timeout`` (E2B kills it then, whatever the host does). CPU and memory
come from the template (E2B takes no per-sandbox request), so ``cpus`` is not used here.

E2B hands a command's stdout to callbacks as text it decoded as UTF-8 with replacement,
which would corrupt binary frame headers, so the worker runs under ``transport.ARMOR_RELAY``
(base64 lines out; stdin stays bytes through ``commands.send_stdin``).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shlex
from pathlib import Path
from typing import Any, ClassVar

from rlm_engine.environments.isolation import WorkArea
from rlm_engine.environments.remote.base import (
    MissingCredentialsError,
    RemoteEnvironment,
    import_sdk,
)
from rlm_engine.environments.remote.transport import OutputSink, RemoteSandbox, StdinWriter


def e2b_sdk() -> Any:
    """The ``e2b`` module, once an API key is known to exist."""
    e2b = import_sdk("e2b", kind="e2b", extra="e2b")
    if not os.environ.get("E2B_API_KEY"):
        raise MissingCredentialsError(
            "The e2b environment found no E2B API key: set E2B_API_KEY (from "
            "https://e2b.dev/dashboard)."
        )
    return e2b


def accepts(fn: Any, name: str) -> bool:
    """Whether the installed SDK's ``fn`` takes the keyword ``name``."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class E2BSandbox(RemoteSandbox):
    """An ``e2b.AsyncSandbox`` and the one worker command running in it."""

    binary_stdout: ClassVar[bool] = False

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self.sandbox_id = str(getattr(sandbox, "sandbox_id", "") or "")
        self._waiter: asyncio.Task[None] | None = None
        self._terminated = False

    async def upload(self, local: Path, remote: str) -> None:
        with open(local, "rb") as f:
            await self.sandbox.files.write(remote, f)

    async def start(self, argv: list[str], env: dict[str, str], sink: OutputSink) -> StdinWriter:
        run = self.sandbox.commands.run
        # Newer SDKs keep every byte a background command printed unless told not to; the
        # worker prints for the whole completion. Older ones (2.56) have no such option.
        keep = {"retain_output": False} if accepts(run, "retain_output") else {}
        handle = await run(
            "exec " + shlex.join(argv),  # E2B runs it with bash -c
            background=True,
            stdin=True,
            envs=env,
            on_stdout=lambda text: sink.stdout(text.encode("utf-8")),
            on_stderr=lambda text: sink.stderr(text.encode("utf-8")),
            timeout=0,  # the worker lives as long as the completion; sandbox_timeout bounds it
            **keep,
        )

        async def wait() -> None:
            code: int | None = None
            try:
                code = (await handle.wait()).exit_code
            except Exception as e:  # CommandExitException carries the code
                code = getattr(e, "exit_code", None)
            sink.end(code)

        self._waiter = asyncio.ensure_future(wait())
        pid = handle.pid

        async def write(data: bytes) -> None:
            await self.sandbox.commands.send_stdin(pid, data)

        return write

    async def terminate(self) -> None:
        if self._terminated:
            return
        self._terminated = True
        if self._waiter is not None:
            self._waiter.cancel()
        await self.sandbox.kill()

    def terminate_blocking(self) -> None:
        e2b = import_sdk("e2b", kind="e2b", extra="e2b")
        e2b.Sandbox.kill(self.sandbox_id)


class E2BEnvironment(RemoteEnvironment):
    """``image`` is the E2B template. See ``RemoteEnvironment`` for the keywords every
    remote kind takes."""

    kind = "e2b"
    default_image: ClassVar[str] = "base"

    def create_kwargs(self, area: WorkArea) -> dict[str, Any]:
        """Keywords of ``AsyncSandbox.create``; public so they can be audited."""
        return {
            "template": self.image,
            "timeout": self.sandbox_timeout,
            "allow_internet_access": False,
            "metadata": {"rlm-environment": self.kind},
        }

    async def _create_sandbox(self, area: WorkArea) -> RemoteSandbox:
        e2b = e2b_sdk()
        sandbox = await e2b.AsyncSandbox.create(**self.create_kwargs(area))
        return E2BSandbox(sandbox)
