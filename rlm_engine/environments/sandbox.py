"""``sandbox``: the subprocess worker inside bubblewrap (Debian package ``bubblewrap``).

On top of what ``subprocess`` guarantees: every namespace unshared (no network at all, the
loopback device of the new network namespace is down), a new PID namespace, a root made of
read-only binds of only what Python needs (``/usr``, the interpreter prefix, the host venv's
packages), a tmpfs ``/tmp``, the work dir as the only writable bind (``/rlm/work`` inside),
``--die-with-parent``, ``--new-session`` and all capabilities dropped. Inside, the worker
is uid 65534; outside, bubblewrap itself already runs under the worker's own unprivileged
uid when the host is root (an unprivileged user namespace), never as root.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from rlm_engine.environments.bootstrap import worker_command
from rlm_engine.environments.channel import ProcessChannel, WorkerChannel
from rlm_engine.environments.isolation import (
    DEVICE_WRITE_PATHS,
    SYSTEM_READ_PATHS,
    WorkArea,
    find_interpreter,
    host_site_packages,
    interpreter_prefixes,
    kill_uid_processes,
    minimal_env,
)
from rlm_engine.environments.worker_env import WorkerEnvironment

WORK_DIR = "/rlm/work"
CONTEXT_PATH = "/rlm/context"
SANDBOX_UID = 65534


def find_bwrap(path: str | None = None) -> str:
    found = path or shutil.which("bwrap")
    if not found:
        raise RuntimeError(
            "The sandbox environment needs bubblewrap: apt-get install -y bubblewrap "
            "(or pass bwrap='/path/to/bwrap')."
        )
    return found


class SandboxEnvironment(WorkerEnvironment):
    """Extra keywords: ``python`` (interpreter), ``bwrap`` (path to the bwrap binary),
    ``share_site_packages`` (default True: bind the host venv's packages read-only)."""

    kind = "sandbox"

    def __init__(
        self,
        *args: Any,
        python: str | None = None,
        bwrap: str | None = None,
        share_site_packages: bool = True,
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self.python = python
        self.bwrap = bwrap
        self.share_site_packages = share_site_packages
        self._interpreter: str | None = None

    def interpreter(self) -> str:
        if self._interpreter is None:
            self._interpreter = find_interpreter(self.python, for_other_uid=self.uid is not None)
        return self._interpreter

    def _reap_policy(self) -> str:
        return "kill_all"  # the worker only sees its own PID namespace

    def _context_path_in_worker(self, area: WorkArea) -> str | None:
        return CONTEXT_PATH if area.context_file else None

    def _worker_sys_path(self) -> list[str]:
        return host_site_packages() if self.share_site_packages else []

    def _landlock_paths(self, area: WorkArea) -> tuple[list[str], list[str]]:
        """Inside the sandbox, Landlock adds what namespaces cannot: no TCP even to the
        sandbox's own loopback, and no writes to its private /tmp."""
        read = [*SYSTEM_READ_PATHS, *interpreter_prefixes(self.interpreter())]
        read += self._worker_sys_path() + [CONTEXT_PATH]
        return read, [WORK_DIR, *DEVICE_WRITE_PATHS]

    def bwrap_argv(self, area: WorkArea) -> list[str]:
        """The full command line; public so users can audit exactly what is shared."""
        python = self.interpreter()
        argv = [
            find_bwrap(self.bwrap),
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--cap-drop", "ALL",
            "--uid", str(SANDBOX_UID),
            "--gid", str(SANDBOX_UID),
            "--hostname", "rlm-sandbox",
            "--ro-bind", "/usr", "/usr",
        ]  # fmt: skip
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                argv += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                argv += ["--ro-bind", top, top]
        for path in ("/etc/ld.so.cache", "/etc/localtime"):
            argv += ["--ro-bind-try", path, path]
        argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        argv += ["--bind", str(area.work), WORK_DIR, "--chdir", WORK_DIR]
        if area.context_file is not None:
            argv += ["--ro-bind", str(area.context_file), CONTEXT_PATH]
        # Last, so a venv under /tmp is not hidden by the tmpfs mounted above.
        prefix = os.path.dirname(os.path.dirname(os.path.realpath(python)))
        if prefix != "/usr":
            argv += ["--ro-bind", prefix, prefix]
        if python != os.path.realpath(python) and not python.startswith("/usr/"):
            argv += ["--ro-bind", python, python]
        for path in self._worker_sys_path():
            argv += ["--ro-bind", path, path]
        return [*argv, "--", *worker_command(python)]

    async def _open_channel(self, area: WorkArea) -> WorkerChannel:
        return await ProcessChannel.spawn(
            self.bwrap_argv(area),
            env=minimal_env(WORK_DIR, self.extra_env),
            cwd=str(area.work),
            uid=self.uid,
        )

    async def _after_terminate(self) -> None:
        if self.uid is not None:
            await kill_uid_processes(self.uid, self.interpreter())
