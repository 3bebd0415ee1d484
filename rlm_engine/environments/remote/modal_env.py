"""``modal``: the worker in a Modal Sandbox, spoken to over ``Sandbox.exec`` streams.

``pip install 'rlm-integrations[modal]'`` and a Modal token (``modal token new``, or
``MODAL_TOKEN_ID`` and ``MODAL_TOKEN_SECRET``). The sandbox: ``image`` from a registry
(default ``python:3.12-slim``), ``block_network=True``, ``cpu=cpus``, ``memory`` (MiB, see
``RemoteEnvironment.sandbox_memory_mb``), ``timeout=sandbox_timeout`` (Modal ends it then
whatever the host does), in the app ``app_name``. The worker runs as ``sb.exec(...,
text=False)``: bytes both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from rlm_engine.environments.isolation import WorkArea
from rlm_engine.environments.remote.base import (
    MissingCredentialsError,
    RemoteEnvironment,
    import_sdk,
)
from rlm_engine.environments.remote.transport import OutputSink, RemoteSandbox, StdinWriter


def modal_sdk() -> Any:
    """The ``modal`` module, once credentials are known to exist."""
    modal = import_sdk("modal", kind="modal", extra="modal")
    config = modal.config.config
    if not (config.get("token_id") and config.get("token_secret")):
        raise MissingCredentialsError(
            "The modal environment found no Modal credentials: run `modal token new` (writes "
            "~/.modal.toml) or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET."
        )
    return modal


class ModalSandbox(RemoteSandbox):
    """A ``modal.Sandbox`` and the one worker process exec'd in it."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self.sandbox_id = str(getattr(sandbox, "object_id", "") or "")
        self._pumps: list[asyncio.Task[None]] = []
        self._terminated = False

    async def upload(self, local: Path, remote: str) -> None:
        await self.sandbox.filesystem.copy_from_local.aio(local, remote)

    async def start(self, argv: list[str], env: dict[str, str], sink: OutputSink) -> StdinWriter:
        proc = await self.sandbox.exec.aio(*argv, env=dict(env), text=False)

        async def pump_stdout() -> None:
            try:
                async for chunk in proc.stdout:
                    sink.stdout(bytes(chunk))
                code = await proc.wait.aio()
            except Exception:
                code = None
            sink.end(code)

        async def pump_stderr() -> None:
            with contextlib.suppress(Exception):
                async for chunk in proc.stderr:
                    sink.stderr(bytes(chunk))

        self._pumps = [asyncio.ensure_future(pump_stdout()), asyncio.ensure_future(pump_stderr())]

        async def write(data: bytes) -> None:
            proc.stdin.write(data)
            await proc.stdin.drain.aio()

        return write

    async def terminate(self) -> None:
        if self._terminated:
            return
        self._terminated = True
        for task in self._pumps:
            task.cancel()
        await self.sandbox.terminate.aio()

    def terminate_blocking(self) -> None:
        self.sandbox.terminate()


class ModalEnvironment(RemoteEnvironment):
    """Extra keyword: ``app_name`` (the Modal app the sandboxes belong to, created if
    missing). See ``RemoteEnvironment`` for the keywords every remote kind takes."""

    kind = "modal"

    def __init__(self, *args: Any, app_name: str = "rlm-integrations", **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.app_name = app_name

    def create_kwargs(self, area: WorkArea) -> dict[str, Any]:
        """Keywords of ``modal.Sandbox.create`` besides ``app`` and ``image``; public so they
        can be audited (and checked against the SDK's signature)."""
        kwargs: dict[str, Any] = {
            "timeout": self.sandbox_timeout,
            "block_network": True,
            "memory": self.sandbox_memory_mb(area),
            "tags": {"rlm-environment": self.kind},
        }
        if self.cpus:
            kwargs["cpu"] = float(self.cpus)
        return kwargs

    async def _create_sandbox(self, area: WorkArea) -> RemoteSandbox:
        modal = modal_sdk()
        app = await modal.App.lookup.aio(self.app_name, create_if_missing=True)
        image = modal.Image.from_registry(self.image)
        sandbox = await modal.Sandbox.create.aio(app=app, image=image, **self.create_kwargs(area))
        return ModalSandbox(sandbox)
