"""Nothing a run puts in the host's temp dir outlives the host, even a host killed by SIGKILL.

Every work area (context file, ``subprocess`` work dir) lives under one directory per host
process, ``$TMPDIR/rlm-<pid>-XXXX``. ``close()`` removes each area as before; for the cases
where no clean-up code runs (SIGKILL, a crash, the OOM killer) a janitor watches the host:
a ``/bin/sh`` started once per process in its own session, blocked reading a pipe whose
only writer is the host. When the host dies, the kernel closes that pipe, the read
returns, and the janitor deletes the directory (twice, a second apart, in case a worker
was still writing) and exits. It costs one idle shell (~1 ms to start, ~1 MB) per process
that uses an isolated environment.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

# $1 is the directory. `read` returns at end of input, i.e. when the host is gone.
JANITOR_SCRIPT = 'read -r _; rm -rf -- "$1"; sleep 1; rm -rf -- "$1"'

_lock = threading.Lock()
_root: Path | None = None
_owner_pid = 0
_janitor: int | None = None
_pipe_w: int | None = None


def host_temp_root() -> Path:
    """This process's directory for work areas (made, and watched, on first use)."""
    global _root, _owner_pid, _janitor, _pipe_w
    with _lock:
        if _root is not None and _owner_pid == os.getpid() and _root.is_dir():
            return _root
        root = Path(tempfile.mkdtemp(prefix=f"rlm-{os.getpid()}-"))
        os.chmod(root, 0o711)  # workers under other uids must reach their own areas
        _root, _owner_pid = root, os.getpid()
        _janitor, _pipe_w = _start_janitor(root)
        return root


def _start_janitor(root: Path) -> tuple[int | None, int | None]:
    """(janitor pid, write end of its pipe). ``posix_spawn`` rather than ``Popen``: the
    janitor is meant to outlive this process, so nothing here should wait for it."""
    read_fd, write_fd = os.pipe()  # non-inheritable: workers never hold the write end
    try:
        pid = os.posix_spawn(
            "/bin/sh",
            ["/bin/sh", "-c", JANITOR_SCRIPT, "rlm-janitor", str(root)],
            {"PATH": "/usr/bin:/bin"},
            file_actions=[
                (os.POSIX_SPAWN_DUP2, read_fd, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            ],
            setsid=True,  # a Ctrl-C or hang-up of the host's process group spares it
        )
    except OSError:  # no /bin/sh: close() and atexit still clean up
        os.close(write_fd)
        return None, None
    finally:
        os.close(read_fd)
    return pid, write_fd


def janitor_pid() -> int | None:
    """The janitor watching this process's areas (None before the first area)."""
    with _lock:
        return _janitor if _owner_pid == os.getpid() else None


@atexit.register
def _at_exit() -> None:
    """A normal exit cleans up at once (the janitor then finds nothing to do)."""
    if _root is not None and _owner_pid == os.getpid():
        shutil.rmtree(_root, ignore_errors=True)
        if _pipe_w is not None:
            with contextlib.suppress(OSError):
                os.close(_pipe_w)


__all__ = ["JANITOR_SCRIPT", "host_temp_root", "janitor_pid"]
