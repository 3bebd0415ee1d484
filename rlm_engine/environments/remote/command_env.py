"""``command``: the worker on any box a command reaches (ssh, kubectl exec, docker exec).

``environment_kwargs={"command": ["ssh", "box"]}`` (or ``["kubectl", "exec", "-i", "pod",
"--"]``, ``["docker", "exec", "-i", "box"]``): a prefix that runs a program on the box with
this process's stdin/stdout. The host appends ``env -i <minimal env> sh -c <make the work dir>
python3 -I -c <bootstrap>`` to it, so the box needs ``python3``, ``env`` and ``sh`` and
nothing installed. The context goes once per worker life as a file (the same prefix runs
``cat > <file>``). Through ``ssh`` the appended words are read by the remote shell, so they
are shell-quoted (``command_shell``; None: when the command is ``ssh``).

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


class CommandBox(RemoteSandbox):
    """The box behind a command prefix; each worker life is one run of the command."""

    def __init__(self, command: list[str], shell: bool, cleanup: list[str]) -> None:
        self.command = command
        self.shell = shell
        self.sandbox_id = shlex.join(command)
        self._cleanup = cleanup
        #: Whether anything reached the box (no clean-up to do for a box never reached).
        self._touched = False
        self._proc: asyncio.subprocess.Process | None = None
        self._pumps: list[asyncio.Task[None]] = []
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
            detail = err.decode("utf-8", "replace").strip()[-500:]
            raise RuntimeError(
                f"`{shlex.join(self.argv(words))[:200]}` exited with status {proc.returncode}"
                + (f": {detail}" if detail else "")
            )

    async def upload(self, local: Path, remote: str) -> None:
        with open(local, "rb") as f:
            await self._run(["sh", "-c", 'cat > "$0"', remote], stdin=f)
        self._touched = True

    async def start(self, argv: list[str], env: dict[str, str], sink: OutputSink) -> StdinWriter:
        words = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]
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
        self._touched = True

        async def pump_stdout() -> None:
            assert proc.stdout is not None
            with contextlib.suppress(Exception):
                while chunk := await proc.stdout.read(1 << 20):
                    sink.stdout(chunk)
            code = None
            with contextlib.suppress(Exception):
                code = await asyncio.wait_for(proc.wait(), 5)
            sink.end(code)

        async def pump_stderr() -> None:
            assert proc.stderr is not None
            with contextlib.suppress(Exception):
                while chunk := await proc.stderr.read(65536):
                    sink.stderr(chunk)

        self._pumps = [asyncio.ensure_future(pump_stdout()), asyncio.ensure_future(pump_stderr())]

        async def write(data: bytes) -> None:
            assert proc.stdin is not None
            proc.stdin.write(data)
            await proc.stdin.drain()

        return write

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

    async def _create_sandbox(self, area: WorkArea) -> RemoteSandbox:
        if not self.command:
            raise ValueError(
                "environment='command' needs the command that reaches the box: "
                "environment_kwargs={'command': ['ssh', 'host']} (or ['kubectl', 'exec', '-i', "
                "'pod', '--'], ['docker', 'exec', '-i', 'box']; rlm run: --env-opt "
                '\'command=["ssh", "host"]\').'
            )
        cleanup = [self.remote_root, self.context_path]
        return CommandBox(self.command, self.command_shell, cleanup)
