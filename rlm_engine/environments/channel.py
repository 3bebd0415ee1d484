"""A live connection to one worker: frames in and out, plus a way to kill it for good.

``WorkerChannel`` hides how the worker runs (a local process, bubblewrap, a container);
``ProcessChannel`` is the implementation for workers that are our own child processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
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


def spawn_process(
    argv: list[str], *, env: dict[str, str], cwd: str, uid: int | None
) -> subprocess.Popen[bytes]:
    """Start a worker process in its own session (so its process group can be killed).

    Plain ``subprocess.Popen`` with unbuffered pipes rather than an asyncio subprocess: a
    worker started ahead of time (``warm.py``) belongs to no event loop until a completion
    attaches it to its own (``ProcessChannel.attach``).
    """
    ids: dict[str, Any] = {}
    if uid is not None:
        ids = {"user": uid, "group": uid, "extra_groups": []}
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
        close_fds=True,
        bufsize=0,
        **ids,
    )


class ProcessChannel(WorkerChannel):
    """A worker that is a direct child process (plain, or bubblewrap wrapping it)."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        frames: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stderr: asyncio.StreamReader,
        read_transports: list[asyncio.BaseTransport],
    ) -> None:
        super().__init__(frames)
        self.proc = proc
        self._writer = writer
        self._read_transports = read_transports
        self._stderr_task = asyncio.ensure_future(self._drain_stderr(stderr))

    @classmethod
    async def spawn(
        cls, argv: list[str], *, env: dict[str, str], cwd: str, uid: int | None
    ) -> ProcessChannel:
        return await cls.attach(spawn_process(argv, env=env, cwd=cwd, uid=uid))

    @classmethod
    async def attach(cls, proc: subprocess.Popen[bytes]) -> ProcessChannel:
        """Connect a running worker's pipes to the current event loop."""
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        loop = asyncio.get_running_loop()
        try:
            frames = asyncio.StreamReader(limit=READ_BUFFER)
            t1, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(frames), proc.stdout
            )
            stderr = asyncio.StreamReader()
            t2, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(stderr), proc.stderr
            )
            transport, protocol_ = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, proc.stdin
            )
        except BaseException:
            _kill_group(proc)
            raise
        writer = asyncio.StreamWriter(transport, protocol_, None, loop)
        return cls(proc, frames, writer, stderr, [t1, t2])

    async def _drain_stderr(self, stderr: asyncio.StreamReader) -> None:
        with contextlib.suppress(Exception):
            while chunk := await stderr.read(65536):
                self._add_diagnostics(chunk)

    async def _write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise ConnectionError("the worker's stdin is closed")
        self._writer.write(data)
        await self._writer.drain()

    async def terminate(self) -> None:
        _kill_group(self.proc)
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._wait(10)
        self._stderr_task.cancel()
        for transport in self._read_transports:  # the pipes' ends: nothing more will come
            transport.close()

    async def exit_description(self) -> str:
        with contextlib.suppress(Exception):
            await self._wait(2)
        return describe_returncode(self.proc.returncode)

    async def _wait(self, timeout: float) -> None:
        """Reap the worker: a killed one is gone within a millisecond or two, so poll
        briefly before parking a thread in ``wait``."""
        for _ in range(20):
            if self.proc.poll() is not None:
                return
            await asyncio.sleep(0.0005)
        await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
