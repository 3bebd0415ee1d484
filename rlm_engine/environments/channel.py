"""A live connection to one worker: frames in and out, plus a way to kill it for good.

``WorkerChannel`` hides how the worker runs (a local process, bubblewrap, a container);
``ProcessChannel`` is the implementation for workers that are our own child processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from abc import ABC, abstractmethod
from typing import Any

from rlm_engine.environments import protocol

_DIAG_TAIL = 4000
# Stream buffer high-water mark: large frames (a 10 MB sub-call result) arrive in few reads.
READ_BUFFER = 16 * 1024 * 1024


class WorkerChannel(ABC):
    """Frames to and from a worker. Every method is safe to call after the worker died."""

    def __init__(self, frames: asyncio.StreamReader) -> None:
        self.frames = frames
        self.diagnostics = ""  # tail of the worker's real stderr (bootstrap failures)
        self._send_lock = asyncio.Lock()

    async def read_frame(self) -> dict[str, Any] | None:
        """The next frame, ``None`` at end of stream; ``ProtocolError`` on garbage."""
        try:
            header = await self.frames.readexactly(protocol.HEADER.size)
        except asyncio.IncompleteReadError as e:
            if e.partial:
                raise protocol.ProtocolError("stream ended inside a frame header") from None
            return None
        length = protocol.decode_length(header)
        try:
            body = await self.frames.readexactly(length)
        except asyncio.IncompleteReadError:
            raise protocol.ProtocolError("stream ended inside a frame") from None
        return protocol.decode_body(body)

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_raw(protocol.encode(message))

    async def send_raw(self, data: bytes) -> None:
        async with self._send_lock:
            await self._write(data)

    def _add_diagnostics(self, data: bytes) -> None:
        self.diagnostics = (self.diagnostics + data.decode("utf-8", "replace"))[-_DIAG_TAIL:]

    @abstractmethod
    async def _write(self, data: bytes) -> None: ...

    @abstractmethod
    async def terminate(self) -> None:
        """Kill the worker and everything it started. Idempotent."""

    @abstractmethod
    async def exit_description(self) -> str:
        """How the worker ended (exit code, signal, out-of-memory), for the LM."""


def describe_returncode(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0 or code > 128:
        signum = -code if code < 0 else code - 128
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        hint = {
            "SIGKILL": "killed: memory limit, process limit, or stopped by the host",
            "SIGXCPU": "CPU-time limit exceeded",
            "SIGXFSZ": "file-size limit exceeded",
            "SIGSEGV": "segmentation fault",
        }.get(name, "")
        return f"terminated by {name}" + (f" ({hint})" if hint else "")
    return f"exited with status {code}"


class ProcessChannel(WorkerChannel):
    """A worker that is a direct child process (plain, or bubblewrap wrapping it)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        super().__init__(proc.stdout)
        self.proc = proc
        self._stderr_task = asyncio.ensure_future(self._drain_stderr())

    @classmethod
    async def spawn(
        cls, argv: list[str], *, env: dict[str, str], cwd: str, uid: int | None
    ) -> ProcessChannel:
        """Start ``argv`` in its own session (so its process group can be killed)."""
        ids: dict[str, Any] = {}
        if uid is not None:
            ids = {"user": uid, "group": uid, "extra_groups": []}
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
            limit=READ_BUFFER,
            **ids,
        )
        return cls(proc)

    async def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        with contextlib.suppress(Exception):
            while chunk := await self.proc.stderr.read(65536):
                self._add_diagnostics(chunk)

    async def _write(self, data: bytes) -> None:
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing():
            raise ConnectionError("the worker's stdin is closed")
        stdin.write(data)
        await stdin.drain()

    async def terminate(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 10)
        self._stderr_task.cancel()

    async def exit_description(self) -> str:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 2)
        return describe_returncode(self.proc.returncode)
