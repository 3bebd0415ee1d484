"""Stand-ins for the clouds of Modal, Prime Intellect and E2B: ONLY the cloud is mocked.

No cloud is reachable from CI. Each fake replaces the provider SDK's cloud calls at the
narrowest point the adapter uses (``modal.Sandbox.create`` / ``modal.App.lookup``,
``prime_sandboxes.AsyncSandboxClient``, ``e2b.AsyncSandbox.create``) and hands back objects
shaped like the SDK's sandbox and process handles, whose exec/process streams really run
the command in a local subprocess. So the worker, the frame protocol, ``llm_query`` calls
answered by the host, interrupts, kills and cleanup all run for real; what is not exercised
is the provider's network, scheduling and isolation. The E2B fake delivers stdout as the
real SDK does (decoded as UTF-8 with replacement, in arbitrary chunks), so the adapter's
base64 armor is tested too. ``tests/test_remote_sandbox.py`` checks every method the
adapters and these fakes use against the installed SDKs' real signatures.

The "sandbox file system" of a fake is this machine's: the adapters put everything under
a unique ``/tmp/rlm-remote-*`` path, and the fixture removes what a test left there.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import itertools
import os
import shutil
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_ids = itertools.count(1)


@dataclass
class CloudLedger:
    """What the fake cloud saw: sandboxes made and terminated, uploads, commands."""

    created: list[str] = field(default_factory=list)
    terminated: list[str] = field(default_factory=list)
    uploads: list[tuple[str, str]] = field(default_factory=list)
    commands: list[Any] = field(default_factory=list)
    envs: list[dict[str, str]] = field(default_factory=list)
    create_kwargs: list[dict[str, Any]] = field(default_factory=list)
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    #: Seconds each sandbox creation takes (a slow image pull).
    create_delay: float = 0.0
    #: Raise this from the next upload (a transfer that fails).
    upload_error: Exception | None = None

    def live(self) -> list[str]:
        return [s for s in self.created if s not in self.terminated]

    def kill_all(self) -> None:
        kill(self.processes)


def kill(processes: list[asyncio.subprocess.Process]) -> None:
    """What terminating a sandbox does to the processes in it."""
    for proc in processes:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


async def kill_and_reap(processes: list[asyncio.subprocess.Process]) -> None:
    """``kill``, then reap them on this loop (their transports must not outlive it)."""
    kill(processes)
    await asyncio.gather(*(proc.wait() for proc in processes))


async def _spawn(
    ledger: CloudLedger, argv: list[str], env: dict[str, str], owner: list[Any]
) -> Any:
    ledger.commands.append(argv)
    ledger.envs.append(dict(env))
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    ledger.processes.append(proc)
    owner.append(proc)
    return proc


async def _chunks(stream: asyncio.StreamReader | None) -> AsyncIterator[bytes]:
    assert stream is not None
    while chunk := await stream.read(65536):
        yield chunk


def _copy(local: Any, remote: str) -> None:
    Path(remote).parent.mkdir(parents=True, exist_ok=True)
    if hasattr(local, "read"):
        Path(remote).write_bytes(local.read())
    else:
        shutil.copyfile(local, remote)


class _Aio:
    """A Modal-style method: ``.aio(...)`` in async code, a blocking call otherwise."""

    def __init__(self, aio: Callable[..., Awaitable[Any]], sync: Callable[..., Any] | None = None):
        self.aio = aio
        self._sync = sync

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._sync is None:
            raise AssertionError("the adapter made a blocking Modal call inside the event loop")
        return self._sync(*args, **kwargs)


# -- Modal --------------------------------------------------------------------------------
class FakeModalStdin:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._buffer = bytearray()
        self.drain = _Aio(self._drain)

    def write(self, data: bytes | bytearray | memoryview | str) -> None:
        self._buffer += data.encode() if isinstance(data, str) else bytes(data)

    async def _drain(self) -> None:
        assert self._proc.stdin is not None
        data, self._buffer = bytes(self._buffer), bytearray()
        self._proc.stdin.write(data)
        await self._proc.stdin.drain()


class FakeModalStream:
    def __init__(self, stream: asyncio.StreamReader | None) -> None:
        self._stream = stream

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _chunks(self._stream)


class FakeModalProcess:
    """Shaped like ``modal.container_process.ContainerProcess`` with ``text=False``."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.stdin = FakeModalStdin(proc)
        self.stdout = FakeModalStream(proc.stdout)
        self.stderr = FakeModalStream(proc.stderr)
        self.wait = _Aio(proc.wait)


class FakeModalFilesystem:
    def __init__(self, box: FakeModalSandbox) -> None:
        self.copy_from_local = _Aio(box._copy_from_local)


class FakeModalSandbox:
    """Shaped like ``modal.Sandbox``: ``exec``, ``filesystem``, ``terminate``, ``object_id``."""

    def __init__(self, ledger: CloudLedger) -> None:
        self.ledger = ledger
        self.object_id = f"sb-fake{next(_ids)}"
        self.exec = _Aio(self._exec)
        self.filesystem = FakeModalFilesystem(self)
        self.terminate = _Aio(self._terminate, self._terminate_sync)
        self.procs: list[Any] = []
        ledger.created.append(self.object_id)

    async def _exec(self, *args: str, env: dict[str, str] | None = None, text: bool = True) -> Any:
        assert not text, "the worker's frames are binary: exec must use text=False"
        return FakeModalProcess(await _spawn(self.ledger, list(args), env or {}, self.procs))

    async def _copy_from_local(self, local_path: Any, remote_path: str) -> None:
        if self.ledger.upload_error is not None:
            raise self.ledger.upload_error
        self.ledger.uploads.append((self.object_id, remote_path))
        _copy(local_path, remote_path)

    async def _terminate(self, *, wait: bool = False) -> None:
        await kill_and_reap(self.procs)
        self.ledger.terminated.append(self.object_id)

    def _terminate_sync(self, *, wait: bool = False) -> None:
        kill(self.procs)
        self.ledger.terminated.append(self.object_id)


def install_modal(monkeypatch: Any, ledger: CloudLedger) -> None:
    import modal

    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-fake")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-fake")

    async def lookup(name: str, *, create_if_missing: bool = False, **kw: Any) -> Any:
        assert create_if_missing
        return object()

    async def create(*args: str, app: Any = None, image: Any = None, **kwargs: Any) -> Any:
        assert app is not None and image is not None and not args
        ledger.create_kwargs.append(kwargs)
        await asyncio.sleep(ledger.create_delay)
        return FakeModalSandbox(ledger)

    monkeypatch.setattr(modal.App, "lookup", _Aio(lookup))
    monkeypatch.setattr(modal.Sandbox, "create", _Aio(create))


# -- Prime Intellect ----------------------------------------------------------------------
class FakePrimeProcess:
    """Shaped like ``prime_sandboxes.AsyncSandboxProcess``."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self.pid = proc.pid
        self.stdout = _chunks(proc.stdout)
        self.stderr = _chunks(proc.stderr)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def write_stdin(self, data: bytes) -> None:
        if self._proc.returncode is not None:
            raise BrokenPipeError("process has exited")
        assert self._proc.stdin is not None
        self._proc.stdin.write(data)
        await self._proc.stdin.drain()

    async def wait(self) -> int:
        return await self._proc.wait()

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)

    async def aclose(self) -> None:
        await self.kill()


class FakePrimeClient:
    """Shaped like ``prime_sandboxes.AsyncSandboxClient`` (the calls the adapter makes)."""

    ledger: CloudLedger

    def __init__(self, api_key: str | None = None) -> None:
        self.closed = False
        self.procs: list[Any] = []  # the adapter uses one client per sandbox

    async def create(self, request: Any) -> Any:
        self.ledger.create_kwargs.append(request.model_dump())
        await asyncio.sleep(self.ledger.create_delay)
        sandbox_id = f"prime-fake{next(_ids)}"
        self.ledger.created.append(sandbox_id)
        return type("Sandbox", (), {"id": sandbox_id})()

    async def wait_for_creation(self, sandbox_id: str, max_attempts: int = 60) -> None:
        return None

    async def upload_file(
        self, sandbox_id: str, file_path: str, local_file_path: str, timeout: int | None = None
    ) -> Any:
        if self.ledger.upload_error is not None:
            raise self.ledger.upload_error
        self.ledger.uploads.append((sandbox_id, file_path))
        _copy(local_file_path, file_path)

    async def open_process(
        self,
        sandbox_id: str,
        command: str,
        working_dir: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
    ) -> FakePrimeProcess:
        # The real SDK runs /bin/bash -c command in the VM.
        return FakePrimeProcess(
            await _spawn(self.ledger, ["/bin/bash", "-c", command], env or {}, self.procs)
        )

    async def delete(self, sandbox_id: str) -> dict[str, Any]:
        await kill_and_reap(self.procs)
        self.ledger.terminated.append(sandbox_id)
        return {}

    async def aclose(self) -> None:
        self.closed = True


def install_prime(monkeypatch: Any, ledger: CloudLedger) -> None:
    import prime_sandboxes

    monkeypatch.setenv("PRIME_API_KEY", "pk-fake")
    client = type("FakePrimeClientBound", (FakePrimeClient,), {"ledger": ledger})
    monkeypatch.setattr(prime_sandboxes, "AsyncSandboxClient", client)


# -- E2B ----------------------------------------------------------------------------------
class FakeE2BHandle:
    def __init__(self, proc: asyncio.subprocess.Process, waiter: asyncio.Future[int]) -> None:
        self.pid = proc.pid
        self._waiter = waiter

    async def wait(self) -> Any:
        code = await self._waiter
        if code != 0:
            import e2b

            raise e2b.CommandExitException(stdout="", stderr="", exit_code=code, error=None)
        return type("CommandResult", (), {"exit_code": code})()


class FakeE2BCommands:
    def __init__(self, ledger: CloudLedger) -> None:
        self.ledger = ledger
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self.owned: list[Any] = []

    async def run(
        self,
        cmd: str,
        background: bool | None = None,
        envs: dict[str, str] | None = None,
        user: str | None = None,
        cwd: str | None = None,
        on_stdout: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
        stdin: bool | None = None,
        timeout: float | None = 60,
        request_timeout: float | None = None,
    ) -> FakeE2BHandle:
        assert background and stdin and timeout == 0
        proc = await _spawn(self.ledger, ["/bin/bash", "-l", "-c", cmd], envs or {}, self.owned)
        self._procs[proc.pid] = proc

        async def deliver(stream: asyncio.StreamReader | None, cb: Any) -> None:
            # As the SDK does: incremental UTF-8 decoding with replacement, per chunk.
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            async for chunk in _chunks(stream):
                text = decoder.decode(chunk)
                if text and cb is not None:
                    cb(text)

        async def pump() -> int:
            await asyncio.gather(deliver(proc.stdout, on_stdout), deliver(proc.stderr, on_stderr))
            return await proc.wait()

        return FakeE2BHandle(proc, asyncio.ensure_future(pump()))

    async def send_stdin(
        self, pid: int, data: str | bytes, request_timeout: float | None = None
    ) -> None:
        proc = self._procs[pid]
        assert proc.stdin is not None
        proc.stdin.write(data.encode() if isinstance(data, str) else data)
        await proc.stdin.drain()


class FakeE2BFiles:
    def __init__(self, box: FakeE2BSandbox) -> None:
        self._box = box

    async def write(self, path: str, data: Any, user: str | None = None, **kw: Any) -> Any:
        if self._box.ledger.upload_error is not None:
            raise self._box.ledger.upload_error
        self._box.ledger.uploads.append((self._box.sandbox_id, path))
        _copy(data, path)


class FakeE2BSandbox:
    """Shaped like ``e2b.AsyncSandbox``: ``commands``, ``files``, ``kill``, ``sandbox_id``."""

    def __init__(self, ledger: CloudLedger) -> None:
        self.ledger = ledger
        self.sandbox_id = f"e2b-fake{next(_ids)}"
        self.commands = FakeE2BCommands(ledger)
        self.files = FakeE2BFiles(self)
        ledger.created.append(self.sandbox_id)

    async def kill(self, **opts: Any) -> bool:
        await kill_and_reap(self.commands.owned)
        self.ledger.terminated.append(self.sandbox_id)
        return True


def install_e2b(monkeypatch: Any, ledger: CloudLedger) -> None:
    import e2b

    monkeypatch.setenv("E2B_API_KEY", "e2b-fake")

    async def create(**kwargs: Any) -> FakeE2BSandbox:
        ledger.create_kwargs.append(kwargs)
        await asyncio.sleep(ledger.create_delay)
        return FakeE2BSandbox(ledger)

    monkeypatch.setattr(e2b.AsyncSandbox, "create", staticmethod(create))


INSTALL = {"modal": install_modal, "prime": install_prime, "e2b": install_e2b}


def remove_remote_dirs(before: set[str]) -> None:
    """Remove the ``/tmp/rlm-remote-*`` paths a test's fake sandboxes left."""
    for entry in set(os.listdir("/tmp")) - before:
        if entry.startswith("rlm-remote-"):
            path = os.path.join("/tmp", entry)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(path)
