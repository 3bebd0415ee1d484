"""The one seam between the worker protocol and a cloud sandbox: a process with stdin/stdout.

A remote sandbox runs the same stdlib-only worker as ``subprocess``, ``sandbox`` and
``docker`` (``bootstrap.worker_command``), so this module holds no REPL code. A provider
adapter (``modal_env``, ``prime_env``, ``e2b_env``) implements ``RemoteSandbox`` in a few
SDK calls: upload a file, start a process and pump its output into an ``OutputSink``, write
its stdin, terminate the whole sandbox. ``RemoteChannel`` turns that into the
``WorkerChannel`` the host side (``worker_env.py``) already speaks: frames, ``llm_query``
calls answered by the host, interrupts, kills.

One sandbox serves one worker life: killing the worker means terminating its sandbox (so
nothing a cell started survives), and a restart after a crash gets a fresh sandbox with the
context uploaded again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ClassVar

from rlm_engine.environments.channel import READ_BUFFER, WorkerChannel, describe_returncode

log = logging.getLogger(__name__)

#: Largest piece of stdin sent in one SDK call (frames can be many MB; RPCs have limits).
WRITE_CHUNK = 1024 * 1024

#: Runs in the sandbox when the provider's stdout is text (E2B decodes it as UTF-8 with
#: replacement, which would corrupt the binary frame headers): it starts the worker with
#: the rest of argv, passes stdin through untouched and sends each chunk of the worker's
#: stdout as one base64 line. Standard library only; not a REPL, a codec.
ARMOR_RELAY = """\
import base64, os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
fd = p.stdout.fileno()
while True:
    chunk = os.read(fd, 1 << 16)
    if not chunk:
        break
    line = base64.b64encode(chunk) + b"\\n"
    while line:
        line = line[os.write(1, line):]
code = p.wait()
sys.exit(code if code >= 0 else 128 - code)
"""


class OutputSink:
    """Where an adapter delivers the worker's output: frames, stderr, and its end.

    Adapters call these from their own pump tasks (or SDK callbacks) on the event loop.
    """

    def __init__(self) -> None:
        self.frames = asyncio.StreamReader(limit=READ_BUFFER)
        #: Receives the worker's real stderr (the channel keeps its tail for reports).
        self.on_stderr: Callable[[bytes], None] = lambda data: None
        self.exit_code: int | None = None
        self.ended = False

    def stdout(self, data: bytes) -> None:
        if data and not self.ended:
            self.frames.feed_data(data)

    def stderr(self, data: bytes) -> None:
        if data:
            self.on_stderr(data)

    def end(self, exit_code: int | None = None) -> None:
        """The process ended (``exit_code`` when the provider reported one). Idempotent."""
        if exit_code is not None and self.exit_code is None:
            self.exit_code = exit_code
        if not self.ended:
            self.ended = True
            self.frames.feed_eof()


class ArmoredSink(OutputSink):
    """An ``OutputSink`` for text-only stdout: undoes ``ARMOR_RELAY``'s base64 lines."""

    def __init__(self) -> None:
        super().__init__()
        self._partial = b""

    def stdout(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            line = line.strip()
            if not line:
                continue
            try:
                decoded = base64.b64decode(line, validate=True)
            except ValueError:  # not ours (a stray write before the relay took over)
                self.stderr(b"[non-frame stdout] " + line[:200] + b"\n")
                continue
            super().stdout(decoded)


#: Writes bytes to the remote process's stdin.
StdinWriter = Callable[[bytes], Awaitable[None]]


class RemoteSandbox(ABC):
    """One provider sandbox holding one worker process; everything the host needs of it.

    Implementations wrap the provider's SDK object and make only the calls named here, so
    tests can stand in for the cloud at exactly this width.
    """

    #: False when the provider delivers stdout as decoded text (then ``ARMOR_RELAY`` wraps
    #: the worker and ``ArmoredSink`` decodes).
    binary_stdout: ClassVar[bool] = True

    #: The provider's id of the sandbox, for messages and audits.
    sandbox_id: str = ""

    @abstractmethod
    async def upload(self, local: Path, remote: str) -> None:
        """Copy a local file to ``remote`` (an absolute path; parents are created)."""

    @abstractmethod
    async def start(self, argv: list[str], env: dict[str, str], sink: OutputSink) -> StdinWriter:
        """Start ``argv`` with ``env`` and pump its stdout/stderr/exit into ``sink``."""

    @abstractmethod
    async def terminate(self) -> None:
        """Stop the sandbox and everything in it (and the pumps). Idempotent."""

    @abstractmethod
    def terminate_blocking(self) -> None:
        """``terminate`` without an event loop, for interpreter exit."""


# -- sandboxes that must not outlive the host -----------------------------------------
_live: dict[int, RemoteSandbox] = {}
_live_lock = threading.Lock()


def track(sandbox: RemoteSandbox) -> None:
    with _live_lock:
        _live[id(sandbox)] = sandbox


def untrack(sandbox: RemoteSandbox) -> None:
    with _live_lock:
        _live.pop(id(sandbox), None)


def live_sandboxes() -> list[RemoteSandbox]:
    with _live_lock:
        return list(_live.values())


def terminate_leftovers() -> None:
    """atexit: terminate sandboxes whose completion never reached ``close``. The provider's
    lifetime limit (``sandbox_timeout``) still ends any sandbox this cannot reach."""
    with _live_lock:
        leftovers = list(_live.values())
        _live.clear()
    for sandbox in leftovers:
        try:
            sandbox.terminate_blocking()
        except Exception as e:  # pragma: no cover - best effort at exit
            log.warning("could not terminate remote sandbox %s at exit: %s", sandbox.sandbox_id, e)


TERMINATE_TIMEOUT = 60.0


async def terminate_sandbox(sandbox: RemoteSandbox) -> None:
    """Terminate, bounded in time and shielded from a cancellation that is already under
    way (a cancelled completion must still stop what it pays for)."""
    try:
        await asyncio.wait_for(asyncio.shield(sandbox.terminate()), TERMINATE_TIMEOUT)
    except Exception as e:
        log.warning(
            "could not terminate remote sandbox %s (%s); its provider's lifetime limit "
            "(sandbox_timeout) will end it",
            sandbox.sandbox_id,
            e,
        )
        return
    untrack(sandbox)


class RemoteChannel(WorkerChannel):
    """A worker in a remote sandbox, as the ``WorkerChannel`` the host side speaks."""

    def __init__(self, sandbox: RemoteSandbox, sink: OutputSink) -> None:
        super().__init__(sink.frames)
        self.sandbox = sandbox
        self._sink = sink
        sink.on_stderr = self._add_diagnostics
        self._write_stdin: StdinWriter | None = None
        self._terminated = False

    @classmethod
    async def open(
        cls, sandbox: RemoteSandbox, argv: list[str], env: dict[str, str], python: str
    ) -> RemoteChannel:
        sink: OutputSink = OutputSink()
        if not sandbox.binary_stdout:
            sink = ArmoredSink()
            argv = [python, "-I", "-c", ARMOR_RELAY, *argv]
        channel = cls(sandbox, sink)
        channel._write_stdin = await sandbox.start(argv, env, sink)
        return channel

    async def _write(self, data: bytes) -> None:
        if self._terminated or self._sink.ended or self._write_stdin is None:
            raise ConnectionError("the remote worker's stdin is closed")
        view = memoryview(data)
        try:
            for start in range(0, len(view), WRITE_CHUNK):
                await self._write_stdin(bytes(view[start : start + WRITE_CHUNK]))
        except (ConnectionError, OSError):
            raise
        except Exception as e:  # the SDK's own error types: a dead worker to the host
            raise ConnectionError(f"writing to the remote worker failed: {e}") from e

    async def terminate(self) -> None:
        if self._terminated:
            return
        self._terminated = True
        with contextlib.suppress(Exception):
            await terminate_sandbox(self.sandbox)
        self._sink.end()

    async def exit_description(self) -> str:
        if self._sink.exit_code is not None:
            return describe_returncode(self._sink.exit_code)
        return f"was stopped with its sandbox ({self.sandbox_id_text()})"

    def sandbox_id_text(self) -> str:
        return self.sandbox.sandbox_id or "id unknown"
