"""The work dir's size limit (``disk_mb``), and what the LM is told when code hits it.

``sandbox`` and ``docker`` give the worker a tmpfs of ``disk_mb`` as its work dir: the
kernel refuses writes beyond it (ENOSPC) and the memory goes when the worker does. The
``subprocess`` worker has no mount namespace of its own, so its work dir lives on the
host's disk; there the host measures the directory while a cell runs (every
``POLL_SECONDS``) and, past the limit, interrupts the cell and empties the work dir.
Together with ``RLIMIT_FSIZE`` (no single file larger than ``disk_mb``) that bounds what
one cell can leave behind to ``disk_mb`` plus what it writes in one poll interval.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

DEFAULT_DISK_MB = 1024
#: How often the host measures a ``subprocess`` work dir while a cell runs.
POLL_SECONDS = 0.25
#: Every directory entry counts at least this much, so a million empty files (inodes)
#: hit the limit too.
MIN_ENTRY_BYTES = 4096

_MB = 1024 * 1024


def work_dir_usage(root: Path, stop_at: int | None = None) -> int:
    """Bytes the tree under ``root`` occupies on disk (allocated blocks, not apparent size,
    at least ``MIN_ENTRY_BYTES`` per entry). Stops counting once past ``stop_at``.

    Symlinks are not followed. A directory the worker made unreadable is opened up first
    (the host owns the tree or is root), so nothing can be hidden from the count.
    """
    total = 0
    pending = [str(root)]
    while pending:
        path = pending.pop()
        try:
            entries = list(os.scandir(path))
        except PermissionError:
            with contextlib.suppress(OSError):
                os.chmod(path, 0o700)
            try:
                entries = list(os.scandir(path))
            except OSError:
                continue
        except OSError:  # removed meanwhile
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            total += max(st.st_blocks * 512, MIN_ENTRY_BYTES)
            if stat.S_ISDIR(st.st_mode):
                pending.append(entry.path)
            if stop_at is not None and total > stop_at:
                return total
    return total


def empty_dir(root: Path) -> None:
    """Delete everything under ``root`` (not ``root`` itself). Files are truncated first, so
    their space is freed even when the worker still holds them open."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            path = os.path.join(dirpath, name)
            with contextlib.suppress(OSError):
                if not os.path.islink(path):
                    os.truncate(path, 0)
            with contextlib.suppress(OSError):
                os.unlink(path)
        for name in dirnames:
            path = os.path.join(dirpath, name)
            with contextlib.suppress(OSError):
                if os.path.islink(path):
                    os.unlink(path)
                else:
                    os.chmod(path, 0o700)
                    os.rmdir(path)


def disk_limit_message(disk_mb: int, kind: str) -> str:
    """The cell error when the host stopped a cell for overfilling the work dir."""
    return (
        f"Disk limit: the {kind} work dir grew past its limit of disk_mb={disk_mb} MB. The "
        "cell was stopped and the work dir's files were deleted (REPL variables are kept). "
        "Keep intermediate data in variables, or write less."
    )


def disk_error_note(error: str, disk_mb: int, file_mb: int) -> str | None:
    """A hint for the LM when a cell's ``error`` is a full work dir or an oversized file.

    Only the exception is looked at (by errno), never printed output, which may well be a
    log file that mentions a full disk.
    """
    if "[Errno 28]" in error:
        return (
            f"[The work dir is full: its limit is disk_mb={disk_mb} MB. Delete files you no "
            "longer need (os.remove) or keep data in variables.]"
        )
    if "[Errno 27]" in error:
        return f"[File size limit: no file may exceed {file_mb} MB here. Write smaller files.]"
    return None


__all__ = [
    "DEFAULT_DISK_MB",
    "MIN_ENTRY_BYTES",
    "POLL_SECONDS",
    "disk_error_note",
    "disk_limit_message",
    "empty_dir",
    "work_dir_usage",
]
