"""``prime``: the worker in a Prime Intellect VM sandbox, over a live process's streams.

``pip install 'rlm-integrations[prime]'`` and an API key (``PRIME_API_KEY``, or ``prime
login``, which writes ``~/.prime/config.json``). Live processes with stdin exist only for VM
sandboxes in ``prime-sandboxes`` 0.2/0.3, so the sandbox is ``vm=True`` there, with ``image`` (default
``python:3.12-slim``), egress denied (``network_denylist=["0.0.0.0/0"]``), ``cpu_cores``,
``memory_gb`` (``RemoteEnvironment.sandbox_memory_mb`` rounded up) and
``timeout_minutes`` from ``sandbox_timeout``, enforced by Prime. The worker runs as
``open_process``: bytes both ways (``write_stdin``, ``stdout``/``stderr`` iterators).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shlex
from pathlib import Path
from typing import Any

from rlm_engine.environments.isolation import WorkArea
from rlm_engine.environments.remote.base import (
    MissingCredentialsError,
    RemoteEnvironment,
    import_sdk,
)
from rlm_engine.environments.remote.transport import OutputSink, RemoteSandbox, StdinWriter


def _request_type() -> Any:
    """The SDK's ``CreateSandboxRequest`` (no credentials needed to build one)."""
    return import_sdk("prime_sandboxes", kind="prime", extra="prime").CreateSandboxRequest


def prime_sdk() -> Any:
    """The ``prime_sandboxes`` module, once an API key is known to exist."""
    prime = import_sdk("prime_sandboxes", kind="prime", extra="prime")
    if not prime.Config().api_key:
        raise MissingCredentialsError(
            "The prime environment found no Prime Intellect API key: set PRIME_API_KEY or "
            "run `prime login` (writes ~/.prime/config.json)."
        )
    return prime


class PrimeSandbox(RemoteSandbox):
    """A Prime VM sandbox (by id, through an ``AsyncSandboxClient``) and its worker."""

    def __init__(self, client: Any, sandbox_id: str) -> None:
        self.client = client
        self.sandbox_id = sandbox_id
        self._process: Any = None
        self._pumps: list[asyncio.Task[None]] = []
        self._terminated = False

    async def upload(self, local: Path, remote: str) -> None:
        await self.client.upload_file(self.sandbox_id, remote, str(local))

    async def start(self, argv: list[str], env: dict[str, str], sink: OutputSink) -> StdinWriter:
        # The SDK runs ``/bin/bash -c command``; exec replaces that shell with the worker.
        proc = await self.client.open_process(self.sandbox_id, "exec " + shlex.join(argv), env=env)
        self._process = proc

        async def pump_stdout() -> None:
            with contextlib.suppress(Exception):
                async for chunk in proc.stdout:
                    sink.stdout(chunk)
            code = None
            with contextlib.suppress(Exception):
                code = await asyncio.wait_for(proc.wait(), 5)
            sink.end(code)

        async def pump_stderr() -> None:
            with contextlib.suppress(Exception):
                async for chunk in proc.stderr:
                    sink.stderr(chunk)

        self._pumps = [asyncio.ensure_future(pump_stdout()), asyncio.ensure_future(pump_stderr())]
        return proc.write_stdin  # type: ignore[no-any-return]

    async def terminate(self) -> None:
        if self._terminated:
            return
        self._terminated = True
        for task in self._pumps:
            task.cancel()
        try:
            if self._process is not None:
                with contextlib.suppress(Exception):
                    await self._process.kill()
                with contextlib.suppress(Exception):
                    await self._process.aclose()
            await self.client.delete(self.sandbox_id)
        finally:
            with contextlib.suppress(Exception):
                await self.client.aclose()

    def terminate_blocking(self) -> None:
        prime = import_sdk("prime_sandboxes", kind="prime", extra="prime")
        prime.SandboxClient(prime.APIClient()).delete(self.sandbox_id)


class PrimeEnvironment(RemoteEnvironment):
    """See ``RemoteEnvironment`` for the keywords every remote kind takes."""

    kind = "prime"

    def create_request(self, area: WorkArea) -> dict[str, Any]:
        """Fields of ``CreateSandboxRequest``; public so they can be audited."""
        vm = {"vm": True} if "vm" in getattr(_request_type(), "model_fields", {}) else {}
        return {
            "name": f"rlm-{self.remote_root.rsplit('-', 1)[-1]}",
            "docker_image": self.image,
            **vm,  # prime-sandboxes 0.2/0.3 need a VM for live processes; 0.4+ have no flag
            "cpu_cores": float(self.cpus or 1.0),
            "memory_gb": float(max(1, math.ceil(self.sandbox_memory_mb(area) / 1024))),
            "disk_size_gb": float(max(5, math.ceil(self.disk_mb / 1024) + 4)),
            "network_denylist": ["0.0.0.0/0"],
            "timeout_minutes": max(1, math.ceil(self.sandbox_timeout / 60)),
            "labels": ["rlm-environment"],
        }

    async def _create_sandbox(self, area: WorkArea) -> RemoteSandbox:
        prime = prime_sdk()
        client = prime.AsyncSandboxClient()
        try:
            created = await client.create(prime.CreateSandboxRequest(**self.create_request(area)))
        except BaseException:
            with contextlib.suppress(Exception):
                await client.aclose()
            raise
        sandbox = PrimeSandbox(client, str(created.id))
        try:
            await client.wait_for_creation(sandbox.sandbox_id)
        except BaseException:
            await asyncio.shield(sandbox.terminate())
            raise
        return sandbox
