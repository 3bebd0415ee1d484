"""``command``: the worker on any box a command reaches (ssh, kubectl exec, docker exec).

``environment_kwargs={"command": ["ssh", "box"]}`` (or ``["kubectl", "exec", "-i", "pod",
"--"]``, ``["docker", "exec", "-i", "box"]``): a prefix that runs a program on the box with
this process's stdin/stdout. The host appends ``env -i <minimal env> sh -c <make the work dir>
python3 -I -c <bootstrap>`` to it, so the box needs ``python3``, ``env`` and ``sh`` and
nothing installed. The context goes once per worker life as a file, through the worker's
own run of the command: a few lines of Python (``RECEIVER``) read exactly its bytes from
stdin into the file, answer ``ACK`` and exec the worker. One run per worker life is what
makes a prefix that starts a fresh box each time work too (``["docker", "run", "-i",
"--rm", ...]``, ``kubectl run -i --rm``): a separate upload would land in another box.
Through ``ssh`` the appended words are read by the remote shell, so they are shell-quoted
(``command_shell``; None: when the command is ``ssh``).

Stopping the worker closes the command (its process group is killed here); the worker ends
when its stdin closes, whatever its cell is doing, and its files on the box are removed
with the same prefix. Isolation is the box's: what the host adds is the worker's rlimits and
a clean environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
from pathlib import Path
from typing import Any

from rlm_engine.environments.isolation import WorkArea
from rlm_engine.environments.remote.base import RemoteEnvironment
from rlm_engine.environments.remote.transport import OutputSink, RemoteSandbox, StdinWriter

#: Seconds the box gets to remove its files when the worker stops (at exit: fewer).
_CLEANUP_TIMEOUT = 30.0
_EXIT_CLEANUP_TIMEOUT = 10.0

#: What ``RECEIVER`` writes to stdout once the context file is complete, before the worker
#: takes over stdout; until then the host knows the box was not reached.
ACK = b"rlm-context-ok\n"

#: Runs on the box before the worker: ``argv[1]`` the context file ("" for none),
#: ``argv[2]`` its size; reads exactly that many bytes from fd 0 (a read never takes more
#: than asked, so the worker's first frame stays in the pipe), answers ``ACK``, and execs
#: the worker (``argv[3:]``). Standard library only.
RECEIVER = """\
import os, sys
path, left = sys.argv[1], int(sys.argv[2])
if path:
    try:
        os.unlink(path)  # a read-only one from an earlier life on the same box
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
    try:
        while left:
            chunk = os.read(0, min(left, 1 << 20))
            if not chunk:
                raise SystemExit("rlm: the host closed stdin while sending the context")
            left -= len(chunk)
            while chunk:
                chunk = chunk[os.write(fd, chunk):]
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)
os.write(1, b"rlm-context-ok\\n")
os.execvp(sys.argv[3], sys.argv[3:])
"""


class CommandBox(RemoteSandbox):
    """The box behind a command prefix; each worker life is one run of the command."""

    def __init__(
        self,
        command: list[str],
        shell: bool,
        cleanup: list[str],
        python: str = "python3",
        reach_timeout: float = 600.0,
    ) -> None:
        self.command = command
        self.shell = shell
        self.sandbox_id = shlex.join(command)
        self._cleanup = cleanup
        self._python = python
        #: Seconds to reach the box and hand it the context (``create_timeout``).
        self._reach_timeout = reach_timeout
        #: The context file to send with the next worker life, and its path on the box.
        self._context: tuple[Path, str] | None = None
        #: Whether anything reached the box (no clean-up to do for a box never reached).
        self._touched = False
        self._proc: asyncio.subprocess.Process | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self._stderr_tail = b""
        self._terminated = False

    def argv(self, words: list[str]) -> list[str]:
        """The command plus ``words``, quoted for a remote shell when there is one."""
        return self.command + ([shlex.quote(w) for w in words] if self.shell else words)

    async def _run(self, words: list[str], stdin: Any = subprocess.DEVNULL) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(words),
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, err = await proc.communicate()
        except BaseException:
            _kill(proc)
            raise
        if proc.returncode:
            raise RuntimeError(self._failed(words, proc.returncode, err))

    def _failed(self, words: list[str], status: int | None, stderr: bytes) -> str:
        detail = stderr.decode("utf-8", "replace").strip()[-500:]
        return f"`{shlex.join(self.argv(words))[:200]}` exited with status {status}" + (
            f": {detail}" if detail else ""
        )

    async def upload(self, local: Path, remote: str) -> None:
        # Sent by ``start`` through the worker's own run of the command (module doc).
        self._context = (local, remote)

    async def start(self, argv: list[str], env: dict[str, str], sink: OutputSink) -> StdinWriter:
        local, remote = self._context or (None, "")
        size = local.stat().st_size if local is not None else 0
        receiver = [self._python, "-I", "-c", RECEIVER, remote, str(size)]
        words = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *receiver, *argv]
        # The client (ssh, kubectl, docker) needs the host's environment to reach the box;
        # the worker on the box gets only ``env``.
        proc = await asyncio.create_subprocess_exec(
            *self.argv(words),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            limit=1 << 20,
        )
        self._proc = proc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr

        async def pump_stderr() -> None:
            with contextlib.suppress(Exception):
                while chunk := await stderr.read(65536):
                    self._stderr_tail = (self._stderr_tail + chunk)[-2000:]
                    sink.stderr(chunk)

        self._pumps = [asyncio.ensure_future(pump_stderr())]
        try:
            reached = await asyncio.wait_for(
                self._hand_over(stdin, stdout, local), self._reach_timeout
            )
        except TimeoutError:
            raise RuntimeError(
                f"`{shlex.join(self.command)[:200]}` did not reach the box and take the "
                f"context within create_timeout={self._reach_timeout:g} s."
            ) from None
        if not reached:
            code = None
            with contextlib.suppress(Exception):
                code = await asyncio.wait_for(proc.wait(), 5)
                await asyncio.wait_for(asyncio.shield(self._pumps[0]), 1)
            raise RuntimeError(self._failed(words, code, self._stderr_tail))
        self._touched = True

        async def pump_stdout() -> None:
            with contextlib.suppress(Exception):
                while chunk := await stdout.read(1 << 20):
                    sink.stdout(chunk)
            code = None
            with contextlib.suppress(Exception):
                code = await asyncio.wait_for(proc.wait(), 5)
            sink.end(code)

        self._pumps.append(asyncio.ensure_future(pump_stdout()))

        async def write(data: bytes) -> None:
            stdin.write(data)
            await stdin.drain()

        return write

    @staticmethod
    async def _hand_over(
        stdin: asyncio.StreamWriter, stdout: asyncio.StreamReader, local: Path | None
    ) -> bool:
        """Send the context file to ``RECEIVER``; whether it answered ``ACK``."""
        try:
            if local is not None:
                with open(local, "rb") as f:
                    while chunk := await asyncio.to_thread(f.read, 1 << 20):
                        stdin.write(chunk)
                        await stdin.drain()
            return await stdout.readexactly(len(ACK)) == ACK
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            return False

    async def terminate(self) -> None:
        if self._terminated:
            return
        self._terminated = True
        if self._proc is not None:
            _kill(self._proc)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._proc.wait(), 10)
        for task in self._pumps:
            task.cancel()
        if self._cleanup and self._touched:
            await asyncio.wait_for(self._run(["rm", "-rf", *self._cleanup]), _CLEANUP_TIMEOUT)

    def terminate_blocking(self) -> None:
        if self._proc is not None:
            _kill(self._proc)
        if self._cleanup and self._touched:
            subprocess.run(
                self.argv(["rm", "-rf", *self._cleanup]),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_EXIT_CLEANUP_TIMEOUT,
                check=False,
            )


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


class CommandEnvironment(RemoteEnvironment):
    """Extra keywords: ``command`` (the prefix that runs a program on the box; required)
    and ``command_shell`` (quote what is appended for a remote shell; None: when the
    command is ``ssh``). ``image``, ``cpus`` and ``sandbox_timeout`` do not apply: the box
    is yours."""

    kind = "command"

    def __init__(
        self,
        *args: Any,
        command: list[str] | None = None,
        command_shell: bool | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self.command = list(command or [])
        if command_shell is None:
            command_shell = bool(self.command) and os.path.basename(self.command[0]) == "ssh"
        self.command_shell = command_shell

    def _reap_policy(self) -> str:
        # kill(-1) on a box shared with other processes (ssh, docker exec) would hit them;
        # only a worker that is PID 1 of its own namespace (docker run) owns all it sees.
        return "if_init"

    async def _create_sandbox(self, area: WorkArea) -> RemoteSandbox:
        if not self.command:
            raise ValueError(
                "environment='command' needs the command that reaches the box: "
                "environment_kwargs={'command': ['ssh', 'host']} (or ['kubectl', 'exec', '-i', "
                "'pod', '--'], ['docker', 'exec', '-i', 'box']; rlm run: --env-opt "
                '\'command=["ssh", "host"]\').'
            )
        cleanup = [self.remote_root, self.context_path]
        return CommandBox(
            self.command, self.command_shell, cleanup, self.python, self.create_timeout
        )
