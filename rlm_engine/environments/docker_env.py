"""``docker``: the same worker inside a container, driven through the ``docker`` Python SDK.

The container runs ``python3 -I -c <bootstrap>`` from any image that has ``python3``
(default ``python:3.12-slim``; ``scripts/docker-test-image.sh`` builds ``rlm-sandbox:test``
without a registry). Its settings: ``network_mode="none"``, read-only root file system,
tmpfs work dir (``/rlm/work``, ``disk_mb``) and ``/tmp``, memory limit (``memory_mb`` plus
twice the context size, plus ``disk_mb`` for the tmpfs), pids limit, all capabilities
dropped, ``no-new-privileges``, a fresh non-root uid. Frames travel over the container's attached stdin/stdout (Docker's stream
multiplexing is undone here), so no port is ever published.

The context file is bind-mounted read-only from the host temp dir instead of being copied
into the container: a 1 GB context then costs one page-cache read, not a 1 GB tar upload
into a tmpfs counted against the memory limit. This requires the Docker daemon to run on
the same machine as the host process.

The container is removed when the completion ends (``close``), on error, on cancellation
and, as a last resort, at interpreter exit. Containers carry the label ``rlm-environment``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import socket
import threading
import warnings
from typing import TYPE_CHECKING, Any

from rlm_engine.environments.bootstrap import worker_command
from rlm_engine.environments.channel import READ_BUFFER, WorkerChannel, describe_returncode
from rlm_engine.environments.isolation import (
    DEVICE_WRITE_PATHS,
    SYSTEM_READ_PATHS,
    WorkArea,
    allocate_uid,
    is_root,
    minimal_env,
)
from rlm_engine.environments.worker_env import WorkerEnvironment

if TYPE_CHECKING:  # the docker extra; imported when an environment starts
    from docker import DockerClient
    from docker.models.containers import Container

DEFAULT_IMAGE = "python:3.12-slim"
WORK_DIR = "/rlm/work"
CONTEXT_PATH = "/rlm/context"
LABEL = "rlm-environment"
_MB = 1024 * 1024

_live_containers: dict[str, Container] = {}
_live_lock = threading.Lock()


def _remove_leftovers() -> None:
    """atexit: remove containers whose completion never reached ``close``."""
    with _live_lock:
        leftovers = list(_live_containers.values())
        _live_containers.clear()
    for container in leftovers:
        with contextlib.suppress(Exception):
            container.remove(force=True)


atexit.register(_remove_leftovers)


def container_id(container: Container) -> str:
    """The id of a container the daemon created (the SDK's model allows ``None``)."""
    if container.id is None:
        raise RuntimeError("the Docker daemon reported a container without an id")
    return container.id


def docker_client() -> DockerClient:
    """A client for the local daemon, or an error that says how to get one."""
    try:
        import docker
    except ImportError:
        raise RuntimeError(
            "The docker environment needs the Docker SDK: pip install 'rlm-integrations[docker]'."
        ) from None
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as e:
        raise RuntimeError(
            f"Cannot reach the Docker daemon ({e}). Start it (dockerd or systemctl start "
            "docker) and make sure this user may use /var/run/docker.sock."
        ) from None
    return client


class DockerChannel(WorkerChannel):
    """A running container; its multiplexed attach stream carries our frames on stdout."""

    def __init__(
        self,
        container: Container,
        attach: Any,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        super().__init__(asyncio.StreamReader())
        self.container = container
        self._attach = attach  # keeps the SDK's socket object (and its fd) alive
        self._writer = writer
        self._state: dict[str, Any] | None = None
        self._demux_task = asyncio.ensure_future(self._demux(reader))

    @classmethod
    async def open(cls, client: DockerClient, create_kwargs: dict[str, Any]) -> DockerChannel:
        container = await asyncio.to_thread(client.containers.create, **create_kwargs)
        cid = container_id(container)
        with _live_lock:
            _live_containers[cid] = container
        try:
            attach = await asyncio.to_thread(
                client.api.attach_socket,
                cid,
                {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1},
            )
            raw = getattr(attach, "_sock", attach)
            # Our own fd: asyncio owns and closes it, whatever the SDK does with the original.
            sock = socket.socket(fileno=os.dup(raw.fileno()))
            reader, writer = await asyncio.open_connection(sock=sock, limit=READ_BUFFER)
            await asyncio.to_thread(container.start)
        except BaseException:
            await asyncio.to_thread(_remove_container, container)
            raise
        return cls(container, attach, reader, writer)

    async def _demux(self, reader: asyncio.StreamReader) -> None:
        """Split Docker's 8-byte-header stream: stdout feeds frames, stderr diagnostics."""
        try:
            while True:
                header = await reader.readexactly(8)
                size = int.from_bytes(header[4:8], "big")
                payload = await reader.readexactly(size)
                if header[0] == 1:
                    self.frames.feed_data(payload)
                else:
                    self._add_diagnostics(payload)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.frames.feed_eof()

    async def _write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise ConnectionError("the container's stdin is closed")
        self._writer.write(data)
        await self._writer.drain()

    async def terminate(self) -> None:
        if self._state is None:
            self._state = await asyncio.to_thread(_remove_container, self.container)
        self._writer.close()
        self._demux_task.cancel()
        with contextlib.suppress(Exception):
            self._attach.close()

    async def exit_description(self) -> str:
        state = self._state or {}
        if state.get("OOMKilled"):
            return "was killed by the container's memory limit (OOM)"
        if not state or state.get("Running"):
            return "was killed by the host"
        return describe_returncode(state.get("ExitCode"))


def _remove_container(container: Container) -> dict[str, Any]:
    """Force-remove; returns the last known state (exit code, OOM flag) for the report."""
    state: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        container.reload()
        state = dict(container.attrs.get("State") or {})
    with contextlib.suppress(Exception):
        container.remove(force=True)
    with _live_lock:
        if container.id is not None:
            _live_containers.pop(container.id, None)
    return state


class DockerEnvironment(WorkerEnvironment):
    """Extra keywords: ``image``, ``python`` (interpreter inside the image, default
    ``python3``), ``cpus`` (CPU quota). The work dir is a tmpfs of ``disk_mb`` (common to
    every isolated environment); ``work_mb``, its former name here, still works."""

    kind = "docker"
    disk_limited_by_mount = True

    def __init__(
        self,
        *args: Any,
        image: str = DEFAULT_IMAGE,
        python: str = "python3",
        cpus: float | None = None,
        work_mb: int | None = None,
        **kw: Any,
    ) -> None:
        if work_mb is not None:
            warnings.warn(
                "DockerEnvironment(work_mb=...) is now disk_mb, the work-dir limit every "
                "isolated environment takes",
                DeprecationWarning,
                stacklevel=2,
            )
            kw.setdefault("disk_mb", work_mb)
        super().__init__(*args, **kw)
        self.image = image
        self.python = python
        self.cpus = cpus
        self._client: DockerClient | None = None
        #: Every container this environment started (restarts add one), for audits.
        self.container_ids: list[str] = []

    def _choose_uid(self) -> int | None:
        return allocate_uid(for_container=True)

    def _reap_policy(self) -> str:
        return "kill_all"  # the worker only sees its own PID namespace

    def _context_path_in_worker(self, area: WorkArea) -> str | None:
        return CONTEXT_PATH if area.context_file else None

    def _landlock_paths(self, area: WorkArea) -> tuple[list[str], list[str]]:
        """Defence in depth where the daemon's seccomp profile lets Landlock through."""
        read = [*SYSTEM_READ_PATHS, "/usr/local", CONTEXT_PATH]
        return read, [WORK_DIR, *DEVICE_WRITE_PATHS]

    def container_kwargs(self, area: WorkArea) -> dict[str, Any]:
        """Everything passed to ``containers.create``; public so it can be audited."""
        uid = self.uid
        # tmpfs pages count against the container's memory: a full work dir must not OOM.
        memory = (self.memory_mb + self.disk_mb + 256) * _MB + 2 * area.context_bytes
        kwargs: dict[str, Any] = {
            "image": self.image,
            "command": worker_command(self.python),
            "stdin_open": True,
            "tty": False,
            "network_mode": "none",
            "read_only": True,
            "tmpfs": {
                WORK_DIR: f"rw,nosuid,nodev,size={self.disk_mb}m,mode=0700,uid={uid},gid={uid}",
                "/tmp": "rw,nosuid,nodev,noexec,size=64m,mode=1777",
            },
            "working_dir": WORK_DIR,
            "user": f"{uid}:{uid}",
            "environment": minimal_env(WORK_DIR, self.extra_env),
            "mem_limit": memory,
            "memswap_limit": memory,
            "pids_limit": self.max_processes,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "labels": {LABEL: self.kind},
        }
        if area.context_file is not None:
            kwargs["volumes"] = {str(area.context_file): {"bind": CONTEXT_PATH, "mode": "ro"}}
        if self.cpus:
            kwargs["nano_cpus"] = int(self.cpus * 1e9)
        return kwargs

    async def _open_channel(self, area: WorkArea) -> WorkerChannel:
        if self._client is None:
            self._client = await asyncio.to_thread(docker_client)
        if area.context_file is not None and not is_root():
            os.chmod(area.context_file, 0o444)  # the container uid is not ours to chown to
        try:
            channel = await DockerChannel.open(self._client, self.container_kwargs(area))
            self.container_ids.append(container_id(channel.container))
            return channel
        except Exception as e:
            if type(e).__name__ == "ImageNotFound":
                raise RuntimeError(
                    f"Docker image {self.image!r} not found. Pull it (docker pull "
                    f"{self.image}) or build a local one with scripts/docker-test-image.sh "
                    "and pass environment_kwargs={'image': 'rlm-sandbox:test'}."
                ) from None
            raise

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
                self._client = None
