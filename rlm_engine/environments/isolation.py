"""Host-side building blocks of isolation: work area, context file, worker uid, clean env.

When the host runs as root, every worker gets a fresh unprivileged uid of its own. That is
what makes the rlimit on processes bite (root is exempt), keeps ``/root`` and other
0700 directories closed, stops the worker from signalling the host or other workers, and
lets the host kill every process the worker ever started with one ``kill(-1)`` as that uid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import secrets
import shutil
import stat
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlm_engine.environments.cleanup import host_temp_root

# Unassigned range well above system users and the usual /etc/subuid allocations.
_UID_LOW, _UID_HIGH = 0x2000_0000, 0x7FFF_0000
_TEXT_CHUNK = 16 * 1024 * 1024  # characters per write when streaming a str context
_INLINE_WRITE_CHARS = 256 * 1024  # smaller str contexts are written on the event loop


def is_root() -> bool:
    return os.geteuid() == 0


def allocate_uid(*, for_container: bool = False) -> int | None:
    """A fresh uid for one worker when we may switch uids (root), else ``None``.

    A container runtime switches uids for us, so ``for_container`` always gets one.
    """
    if not is_root() and not for_container:
        return None
    while True:
        uid = _UID_LOW + secrets.randbelow(_UID_HIGH - _UID_LOW)
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid


def minimal_env(home: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The whole environment a worker sees: nothing inherited from the host."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        # BLAS thread pools would count against the process limit; the REPL is one thread.
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    env.update(extra or {})
    return env


def host_site_packages() -> list[str]:
    """The host venv's package dirs, offered read-only to the worker (numpy and friends)."""
    paths = sysconfig.get_paths()
    out: list[str] = []
    for key in ("purelib", "platlib"):
        p = paths.get(key)
        if p and os.path.isdir(p) and p not in out:
            out.append(p)
    return out


def _world_executable(path: str) -> bool:
    """Whether any uid may execute ``path`` (every parent dir traversable by others)."""
    real = Path(os.path.realpath(path))
    try:
        if not real.stat().st_mode & stat.S_IXOTH:
            return False
        return all(parent.stat().st_mode & stat.S_IXOTH for parent in real.parents)
    except OSError:
        return False


def find_interpreter(python: str | None = None, *, for_other_uid: bool) -> str:
    """A python3 the worker can run: the host's own, or a same-version system one.

    A worker under another uid cannot exec an interpreter inside a 0700 home (pyenv under
    /root, for example), so then we fall back to the system interpreter of the same
    major.minor version, which can load the host venv's compiled packages.
    """
    if python:
        return python
    if not for_other_uid or _world_executable(sys.executable):
        return sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for directory in ("/usr/bin", "/usr/local/bin", "/bin"):
        candidate = os.path.join(directory, version)
        if os.path.exists(candidate) and _world_executable(candidate):
            return candidate
    raise RuntimeError(
        f"No {version} interpreter that an unprivileged uid can execute was found "
        f"({sys.executable} sits in a directory closed to other users). Install "
        f"{version} system-wide (apt-get install -y {version}) or pass python='/path/to/python3'."
    )


@dataclass
class WorkArea:
    """A private temp dir: ``work/`` (the worker's only writable dir) and ``in/context``.

    It lives under the process's ``host_temp_root()``, which a janitor deletes should the
    host die without running ``close()``. It can be made before the context is known
    (``create_empty``, for a worker started ahead of time) and loaded later (``load``).

    Layout: ``root`` is 0711 (not listable), ``work`` is 0700 owned by the worker uid,
    ``in`` is 0750 with the worker's gid as group and holds ``context``, 0440 likewise, so
    the worker reads but cannot change it and a restarted worker reloads the original.
    """

    root: Path
    work: Path
    context_file: Path | None
    context_kind: str  # "text", "json" or "none"
    context_bytes: int
    uid: int | None

    @property
    def inbox(self) -> Path:
        """The read-only directory the context file is written to."""
        return self.root / "in"

    @classmethod
    def create_empty(cls, uid: int | None) -> WorkArea:
        root = Path(tempfile.mkdtemp(prefix="env-", dir=host_temp_root()))
        try:
            os.chmod(root, 0o711)
            work = root / "work"
            work.mkdir(mode=0o700)
            inbox = root / "in"
            inbox.mkdir(mode=0o750 if uid is not None else 0o700)
            if uid is not None:
                os.chown(work, uid, uid)
                os.chown(inbox, 0, uid)
            return cls(root, work, None, "none", 0, uid)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise

    @classmethod
    async def create(cls, context: Any, uid: int | None) -> WorkArea:
        area = cls.create_empty(uid)
        try:
            await area.load(context)
        except BaseException:
            area.cleanup()
            raise
        return area

    async def load(self, context: Any) -> None:
        """Write the context file (once); ``None`` means no context at all."""
        if self.context_file is not None:
            raise RuntimeError("the work area already holds a context")
        if context is None:
            return
        ctx = self.inbox / "context"
        if isinstance(context, str) and len(context) < _INLINE_WRITE_CHARS:
            kind = write_context(ctx, context)  # a thread hop would cost more than this
        else:
            kind = await asyncio.to_thread(write_context, ctx, context)
        os.chmod(ctx, 0o440 if self.uid is not None else 0o400)
        if self.uid is not None:
            os.chown(ctx, 0, self.uid)
        self.context_file, self.context_kind = ctx, kind
        self.context_bytes = ctx.stat().st_size

    def context_spec(self, path_in_worker: str | None = None) -> dict[str, Any]:
        path = path_in_worker or (str(self.context_file) if self.context_file else None)
        return {"kind": self.context_kind, "path": path}

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def write_context(path: Path, context: Any) -> str:
    """Stream the context to disk: a str as UTF-8 text, anything else as JSON.

    Streaming keeps the host's peak memory near the context's own size even at 1 GB.
    """
    if isinstance(context, str):
        with open(path, "w", encoding="utf-8", errors="surrogatepass", newline="") as f:
            for i in range(0, len(context), _TEXT_CHUNK):
                f.write(context[i : i + _TEXT_CHUNK])
        return "text"
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(context, f, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise TypeError(
            "An isolated environment receives the context as a str or as JSON; "
            f"this {type(context).__name__} is not JSON-serializable ({e}). Convert it to "
            "str/list/dict first; a context of host objects needs environment='local' "
            "(trusted documents only)."
        ) from None
    return "json"


SYSTEM_READ_PATHS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/proc", "/dev"]
DEVICE_WRITE_PATHS = ["/dev/null", "/dev/zero", "/dev/full"]


def interpreter_prefixes(python: str) -> list[str]:
    """Directories an interpreter reads its standard library from."""
    real = os.path.realpath(python)
    out = [os.path.dirname(os.path.dirname(real))]
    if os.path.realpath(sys.executable) == real or python == sys.executable:
        out += [sys.base_prefix, sys.prefix]
    return sorted(set(out))


_KILL_ALL_CODE = (
    "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n"
)


async def kill_uid_processes(uid: int, python: str) -> int:
    """Kill every process running as ``uid``; returns how many were left afterwards.

    ``kill(-1, SIGKILL)`` issued as that uid is atomic with respect to fork, so even a
    fork bomb that escaped its process group and session cannot outrun it. Usually the
    worker is gone and left nothing behind (it reaps what its cells start), so /proc is
    checked first, for up to 0.1 s, and the helper (~15 ms) runs only when something stays.
    """
    if uid == 0:  # never: kill(-1) as root would take down the whole machine
        raise ValueError("kill_uid_processes refuses uid 0")
    for _ in range(100):  # a killed sandbox's inner processes take a few ms to go
        if not _dumpable_processes_of_uid(uid):
            break
        await asyncio.sleep(0.001)
    if not processes_of_uid(uid):  # the full check, non-dumpable processes included
        return 0
    for _ in range(5):
        if not processes_of_uid(uid):
            return 0
        proc = await asyncio.create_subprocess_exec(
            python, "-I", "-S", "-c", _KILL_ALL_CODE,
            user=uid, group=uid, extra_groups=[], env={}, cwd="/",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await proc.wait()
        if not processes_of_uid(uid):
            return 0
        await asyncio.sleep(0.05)
    return len(processes_of_uid(uid))


def _dumpable_processes_of_uid(uid: int) -> bool:
    """Whether any live process runs with effective uid ``uid`` (a cheap first look: one
    stat per process; a process that made itself non-dumpable looks root-owned here)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    with open(f"/proc/{entry}/stat", "rb") as f:  # zombies do not count
                        if f.read().rpartition(b")")[2].split()[0] != b"Z":
                            return True
    return False


def processes_of_uid(uid: int) -> list[int]:
    """Live (non-zombie) pids whose real uid is ``uid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            # Cheap pre-filter: /proc/<pid> belongs to the effective uid, or to root when
            # the process made itself non-dumpable, so only those two need a closer look.
            if os.stat(f"/proc/{entry}").st_uid not in (uid, 0):
                continue
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if fields.get("State", "").strip().startswith("Z"):
            continue
        uids = fields.get("Uid", "").split()
        if uids and int(uids[0]) == uid:
            out.append(int(entry))
    return out
