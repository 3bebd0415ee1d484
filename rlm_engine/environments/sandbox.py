"""``sandbox``: the subprocess worker inside bubblewrap (Debian package ``bubblewrap``).

On top of what ``subprocess`` guarantees: every namespace unshared (no network at all, the
loopback device of the new network namespace is down), a new PID namespace, a root made of
read-only binds of only what Python needs (``/usr``, the interpreter prefix, the host venv's
packages), a read-only ``/dev`` (device nodes only), size-limited tmpfs mounts for the work
dir (``/rlm/work``, ``disk_mb``), ``/tmp`` and ``/dev/shm`` (``SCRATCH_MB`` each), so
nothing the code writes touches the host's disk and all of it vanishes with the sandbox;
``--die-with-parent``, ``--new-session`` and all capabilities dropped. Inside, the worker
is uid 65534; outside, bubblewrap itself already runs under the worker's own unprivileged
uid when the host is root (an unprivileged user namespace), never as root.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from rlm_engine.environments.bootstrap import worker_command
from rlm_engine.environments.isolation import (
    DEVICE_WRITE_PATHS,
    SYSTEM_READ_PATHS,
    WorkArea,
    host_site_packages,
    interpreter_prefixes,
    minimal_env,
)
from rlm_engine.environments.process_worker import ProcessWorkerEnvironment, SpawnArgs

WORK_DIR = "/rlm/work"
INBOX = "/rlm/in"  # the host's read-only ``in/`` dir, holding the context file
CONTEXT_PATH = f"{INBOX}/context"
SANDBOX_UID = 65534
#: Size of the sandbox's private /tmp and /dev/shm (TMPDIR points at the work dir).
SCRATCH_MB = 64
_MB = 1024 * 1024


def find_bwrap(path: str | None = None) -> str:
    found = path or shutil.which("bwrap")
    if not found:
        raise RuntimeError(
            "The sandbox environment needs bubblewrap: apt-get install -y bubblewrap "
            "(or pass bwrap='/path/to/bwrap')."
        )
    return found


class SandboxEnvironment(ProcessWorkerEnvironment):
    """Extra keywords: ``python`` (interpreter), ``bwrap`` (path to the bwrap binary),
    ``share_site_packages`` (default True: bind the host venv's packages read-only)."""

    kind = "sandbox"
    disk_limited_by_mount = True

    def __init__(
        self,
        *args: Any,
        bwrap: str | None = None,
        share_site_packages: bool = True,
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self.bwrap = bwrap
        self.share_site_packages = share_site_packages

    def warm_key(self) -> tuple[Any, ...]:
        return (*super().warm_key(), find_bwrap(self.bwrap), self.share_site_packages, self.disk_mb)

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
        scratch = str(SCRATCH_MB * _MB)
        argv += ["--proc", "/proc", "--dev", "/dev", "--size", scratch, "--tmpfs", "/dev/shm"]
        argv += ["--remount-ro", "/dev", "--size", scratch, "--tmpfs", "/tmp"]
        argv += ["--perms", "0700", "--size", str(self.disk_mb * _MB), "--tmpfs", WORK_DIR]
        argv += ["--chdir", WORK_DIR]
        # The directory, not the file: a worker started ahead of time gets its context
        # written there after bwrap has set up the mounts.
        argv += ["--ro-bind", str(area.inbox), INBOX]
        # Last, so a venv under /tmp is not hidden by the tmpfs mounted above.
        prefix = os.path.dirname(os.path.dirname(os.path.realpath(python)))
        if prefix != "/usr":
            argv += ["--ro-bind", prefix, prefix]
        if python != os.path.realpath(python) and not python.startswith("/usr/"):
            argv += ["--ro-bind", python, python]
        for path in self._worker_sys_path():
            argv += ["--ro-bind", path, path]
        return [*argv, "--", *worker_command(python)]

    def _spawn_args(self, area: WorkArea) -> SpawnArgs:
        return SpawnArgs(
            self.bwrap_argv(area), minimal_env(WORK_DIR, self.extra_env), str(area.work)
        )
