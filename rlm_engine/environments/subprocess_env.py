"""``subprocess``: the REPL in a separate, resource-limited Python process.

Guarantees: a clean environment (nothing inherited from the host, so no API keys), a
private temporary work dir as cwd and HOME, rlimits (address space, CPU time, file size,
processes), the two-step per-cell timeout, and crash recovery. When the host runs as root
the worker also gets a fresh unprivileged uid, which closes 0700 directories such as
/root, prevents signalling the host and lets the host kill every process the worker started.

Where the kernel supports Landlock (Linux >= 5.13; TCP rules >= 6.7) the worker also
confines itself before the first cell: read-only access to system dirs, the interpreter,
the host venv's packages and the context file, write access to the work dir only, no TCP
bind/connect, and no signals to processes outside itself. ``env.confinement`` says what
the kernel enforced. Not guaranteed: UDP and unix sockets, and anything Landlock cannot
cover on older kernels. Prefer ``sandbox`` or ``docker`` for untrusted input.
"""

from __future__ import annotations

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


class SubprocessEnvironment(ProcessWorkerEnvironment):
    """Extra keyword: ``python`` (interpreter path; default: the host's, or a same-version
    system python3 when the worker runs under its own uid)."""

    kind = "subprocess"

    def _worker_sys_path(self) -> list[str]:
        return host_site_packages()

    def _landlock_paths(self, area: WorkArea) -> tuple[list[str], list[str]]:
        read = [*SYSTEM_READ_PATHS, "/sys/devices/system/cpu"]
        read += interpreter_prefixes(self.interpreter()) + host_site_packages()
        if area.context_file is not None:
            read.append(str(area.context_file))
        return read, [str(area.work), *DEVICE_WRITE_PATHS]

    def _spawn_args(self, area: WorkArea) -> SpawnArgs:
        return SpawnArgs(
            worker_command(self.interpreter()),
            minimal_env(str(area.work), self.extra_env),
            str(area.work),
        )
