"""Shared host side of the three isolated environments (``subprocess``, ``sandbox``, ``docker``).

Subclasses only say how to launch a worker (``_open_channel``); this class owns the life
cycle: context file, handshake, one frame per cell, host function calls served
concurrently on the event loop, and the timeout ladder: ``interrupt`` frame (the cell gets
``KeyboardInterrupt``, variables survive), then after ``kill_grace`` seconds a hard kill, a
crash report to the LM and a fresh worker with ``context`` reloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import abstractmethod
from typing import Any

from rlm_engine.environments import bootstrap, protocol
from rlm_engine.environments.base import Environment, HostFunction
from rlm_engine.environments.channel import WorkerChannel
from rlm_engine.environments.disk import (
    DEFAULT_DISK_MB,
    POLL_SECONDS,
    disk_error_note,
    disk_limit_message,
    empty_dir,
    work_dir_usage,
)
from rlm_engine.environments.isolation import WorkArea, allocate_uid, is_root
from rlm_engine.environments.warm import WarmWorker
from rlm_engine.types import ExecResult

_MB = 1024 * 1024


class _ChannelClosed:
    """Put on the reply queue when the worker's stream ends or turns to garbage."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class WorkerCrashed(Exception):
    """The worker died or broke the protocol outside of a cell."""


class WorkerEnvironment(Environment):
    """A REPL in a separate worker process, spoken to over framed stdin/stdout.

    Common keyword arguments: ``timeout`` (seconds per cell), ``memory_mb`` (address space
    available to REPL code on top of the interpreter and the loaded context),
    ``cpu_seconds`` (CPU time per worker life), ``file_size_mb`` (largest file),
    ``disk_mb`` (total size of the work dir), ``max_processes``, ``kill_grace`` (seconds
    between interrupt and kill), ``start_timeout``, ``env`` (extra environment variables;
    nothing is inherited from the host), ``landlock`` (None: confine the worker with
    Landlock where the kernel supports it; True: require it; False: off).

    How ``disk_mb`` is enforced depends on the kind: ``sandbox`` and ``docker`` mount the
    work dir as a tmpfs of that size (writes beyond it fail with ENOSPC, and the tmpfs
    vanishes with the worker); ``subprocess`` has no mount namespace, so the host measures
    the work dir while a cell runs (see ``disk.py``) and stops the cell that overfills it.
    """

    #: True when the work dir is a size-limited mount (the kernel enforces ``disk_mb``);
    #: False when the host must measure it.
    disk_limited_by_mount = False

    #: Label used in messages to the LM ("subprocess", "sandbox", "docker").
    kind = "worker"

    def __init__(
        self,
        timeout: float | None = None,
        max_output_chars: int = 1_000_000,
        *,
        memory_mb: int = 2048,
        cpu_seconds: int | None = 3600,
        file_size_mb: int = 1024,
        disk_mb: int = DEFAULT_DISK_MB,
        max_processes: int = 256,
        kill_grace: float = 2.0,
        start_timeout: float = 60.0,
        env: dict[str, str] | None = None,
        landlock: bool | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(timeout=timeout, max_output_chars=max_output_chars, **kw)
        self.memory_mb = memory_mb
        self.cpu_seconds = cpu_seconds
        self.file_size_mb = file_size_mb
        if disk_mb < 1:
            raise ValueError(f"disk_mb must be at least 1, got {disk_mb}")
        self.disk_mb = disk_mb
        #: Set when the disk limit stopped the current cell.
        self._disk_hit = False
        self.max_processes = max_processes
        self.kill_grace = kill_grace
        self.start_timeout = start_timeout
        self.extra_env = dict(env or {})
        self.landlock = landlock
        #: What the worker reported as enforced by Landlock (None: not requested).
        self.confinement: dict[str, Any] | None = None
        self.uid: int | None = None
        self.area: WorkArea | None = None
        self.restarts = 0
        #: True when this environment runs on a worker started ahead of time (warm.py).
        self.warm_start = False
        self.worker_info: dict[str, Any] = {}
        self._functions: dict[str, HostFunction] = {}
        self._setup: str | None = None
        self._channel: WorkerChannel | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._replies: asyncio.Queue[dict[str, Any] | _ChannelClosed] = asyncio.Queue()
        self._calls: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._closed = False

    # -- what subclasses provide ---------------------------------------------------------
    @abstractmethod
    async def _open_channel(self, area: WorkArea) -> WorkerChannel:
        """Launch a worker running ``bootstrap.worker_command`` and connect to it."""

    def _context_path_in_worker(self, area: WorkArea) -> str | None:
        """Where the worker finds the context file (a container sees another path)."""
        return str(area.context_file) if area.context_file else None

    def _worker_sys_path(self) -> list[str]:
        """Extra import paths for the worker (the host venv, where it is reachable)."""
        return []

    def _landlock_paths(self, area: WorkArea) -> tuple[list[str], list[str]] | None:
        """(read-only, writable) paths as the worker sees them; None: no Landlock."""
        return None

    def _landlock_spec(self, area: WorkArea) -> dict[str, Any] | None:
        paths = None if self.landlock is False else self._landlock_paths(area)
        if paths is None:
            if self.landlock:
                raise RuntimeError(f"landlock=True is not supported by the {self.kind} environment")
            return None
        return {"read": paths[0], "write": paths[1], "required": bool(self.landlock)}

    def _reap_policy(self) -> str:
        """How the worker may stop processes a cell left behind: ``kill_all`` when every
        process it can signal is its own (own uid, PID namespace), ``if_scoped`` when only
        a Landlock signal scope would make that true, ``none`` otherwise."""
        return "kill_all" if self.uid is not None else "if_scoped"

    def _choose_uid(self) -> int | None:
        """The uid the worker runs as: a fresh one when the host may switch uids."""
        return allocate_uid()

    async def _after_terminate(self) -> None:
        """Extra cleanup once a worker is gone (processes left under its uid, ...)."""

    # -- life cycle --------------------------------------------------------------------
    async def start(
        self, context: Any, functions: dict[str, HostFunction], setup: str | None = None
    ) -> None:
        if self.area is not None:
            raise RuntimeError(f"{type(self).__name__}.start() called twice")
        self._functions = dict(functions)
        self._setup = setup
        warm = self._take_warm()
        if warm is not None and await self._start_warm(warm, context):
            return
        self.uid = self._choose_uid()
        self.area = await WorkArea.create(context, self.uid if is_root() else None)
        try:
            await self._launch()
        except BaseException:
            await self.close()
            raise

    async def _start_warm(self, warm: WarmWorker, context: Any) -> bool:
        """Start on a worker started ahead of time; False (all undone) if it failed to
        come up, so the caller starts cold. A context that cannot be sent still raises."""
        self.uid, self.area = warm.uid, warm.area
        try:
            await self.area.load(context)
        except BaseException:
            await asyncio.to_thread(warm.discard)
            self.area = None
            await self.close()
            raise
        try:
            await self._launch(warm)
        except Exception:
            await asyncio.to_thread(warm.discard)
            self.uid = self.area = None
            return False
        except BaseException:
            await self.close()
            raise
        self.warm_start = True
        return True

    def _take_warm(self) -> WarmWorker | None:
        """A worker started ahead of time for this environment, if one is ready."""
        return None

    async def _attach_warm(self, warm: WarmWorker) -> WorkerChannel:
        raise NotImplementedError(f"{type(self).__name__} does not start workers ahead of time")

    async def _launch(self, warm: WarmWorker | None = None) -> None:
        assert self.area is not None
        self._replies = asyncio.Queue()
        if warm is None:
            channel = await self._open_channel(self.area)
        else:
            channel = await self._attach_warm(warm)
        self._channel = channel
        self._pump_task = asyncio.ensure_future(self._pump(channel))
        try:
            if warm is None:
                await channel.send_raw(bootstrap.bundle_frame())
                hello = await self._reply(self.start_timeout, "hello")
            else:
                hello = warm.hello  # it said hello when it was started
            await channel.send(
                {
                    "op": "init",
                    "context": {
                        "kind": self.area.context_kind,
                        "path": self._context_path_in_worker(self.area),
                    },
                    "functions": sorted(self._functions),
                    "setup": self._setup,
                    "max_output_chars": self.max_output_chars,
                    "sys_path": self._worker_sys_path(),
                    "limits": self._limits(),
                    "landlock": self._landlock_spec(self.area),
                    "reap": self._reap_policy(),
                }
            )
            ready = await self._reply(self.start_timeout + self.area.context_bytes / (50 * _MB))
            if ready.get("op") == "init_error":
                raise WorkerCrashed(f"it could not initialize: {ready.get('error')}")
            if ready.get("op") != "ready":
                raise WorkerCrashed(f"unexpected {ready.get('op')!r} frame during start-up")
            self.worker_info = hello
            self.confinement = ready.get("confinement")
        except BaseException as e:
            detail = await self._shutdown_worker()  # never leave a half-started worker
            if not isinstance(e, Exception):
                raise
            if isinstance(e, TimeoutError):
                e = WorkerCrashed(f"no answer within {self.start_timeout:g} s")
            raise RuntimeError(
                f"The {self.kind} worker failed to start: {e}. {detail}".strip()
            ) from None

    def _limits(self) -> dict[str, Any]:
        return {
            "memory_bytes": self.memory_mb * _MB if self.memory_mb else None,
            "cpu_seconds": self.cpu_seconds,
            # No single file may outgrow the whole work dir either.
            "file_size_bytes": self._file_mb() * _MB,
            "max_processes": self.max_processes,
        }

    async def _pump(self, channel: WorkerChannel) -> None:
        """Route frames from the worker: host calls start tasks, the rest are replies."""
        reason = "the worker closed its output stream"
        try:
            while (message := await channel.read_frame()) is not None:
                if message["op"] == "call":
                    task = asyncio.ensure_future(self._serve_call(channel, message))
                    self._calls.add(task)
                    task.add_done_callback(self._calls.discard)
                else:
                    self._replies.put_nowait(message)
        except protocol.ProtocolError as e:
            reason = f"protocol error: {e}"
        except (ConnectionError, OSError) as e:
            reason = f"channel error: {e}"
        self._replies.put_nowait(_ChannelClosed(reason))

    async def _serve_call(self, channel: WorkerChannel, message: dict[str, Any]) -> None:
        name = message.get("name")
        reply: dict[str, Any] = {"op": "result", "id": message.get("id")}
        try:
            fn = self._functions.get(name) if isinstance(name, str) else None
            if fn is None:
                raise LookupError(f"no host function named {name!r}")
            args, kwargs = message.get("args") or [], message.get("kwargs") or {}
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise TypeError("malformed arguments")
            value = await fn.fn(*args, **kwargs)
        except Exception as e:  # becomes HostCallError in the cell, like in `local`
            reply.update(ok=False, error=f"{name} failed: {type(e).__name__}: {e}")
            frame = protocol.encode(reply)
        else:
            try:  # strictly: a live object must not arrive as its str() without a word
                frame = protocol.encode({**reply, "ok": True, "value": value}, strict=True)
            except (TypeError, ValueError, protocol.ProtocolError) as e:
                reply.update(ok=False, error=self._unsendable(str(name), value, e))
                frame = protocol.encode(reply)
        with contextlib.suppress(ConnectionError, OSError):
            await channel.send_raw(frame)

    def _unsendable(self, name: str, value: Any, error: Exception) -> str:
        """Why a host function's result cannot reach this worker, and what to do."""
        if isinstance(error, protocol.ProtocolError):
            return f"{name} returned a result too large to send to the REPL ({error})."
        return (
            f"{name} returned a {type(value).__name__}, which cannot be sent into the "
            f"{self.kind} environment ({error}): results must be JSON values (str, int, float, "
            "bool, None, list, dict). Return plain data from it; code that needs host objects "
            "in the REPL needs environment='local' (trusted documents only)."
        )

    async def _reply(self, timeout: float | None, expect: str | None = None) -> dict[str, Any]:
        item = await asyncio.wait_for(self._replies.get(), timeout)
        if isinstance(item, _ChannelClosed):
            raise WorkerCrashed(item.reason)
        if expect is not None and item.get("op") != expect:
            raise WorkerCrashed(f"expected a {expect!r} frame, got {item.get('op')!r}")
        return item

    async def _shutdown_worker(self) -> str:
        """Kill the current worker (if any); returns how it ended plus its stderr tail."""
        channel, self._channel = self._channel, None
        for task in list(self._calls):
            task.cancel()
        if channel is None:
            return ""
        await channel.terminate()
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(BaseException):
                await self._pump_task
        await self._after_terminate()
        how = await channel.exit_description()
        diag = channel.diagnostics.strip()
        return f"Worker {how}." + (f" Worker stderr: {diag[-800:]}" if diag else "")

    async def _restart_after_crash(self, what: str) -> ExecResult:
        detail = await self._shutdown_worker()
        self.restarts += 1
        try:
            await self._launch()
            after = (
                "The REPL was restarted: `context` (and the setup) is loaded again, but "
                "every other variable from earlier cells is lost."
            )
        except Exception as e:
            after = f"Restarting the REPL failed ({e}); further cells will fail."
        return ExecResult(error=f"{what} {detail} {after}", crashed=True)

    # -- REPL protocol ---------------------------------------------------------------
    async def execute(self, code: str, timeout: float | None = None) -> ExecResult:
        limit = timeout if timeout is not None else self.timeout
        async with self._lock:
            started = time.perf_counter()
            result = await self._execute_locked(code, limit)
            result.duration = time.perf_counter() - started
            return result

    async def _execute_locked(self, code: str, limit: float | None) -> ExecResult:
        if self._closed or self.area is None:
            raise RuntimeError(f"{type(self).__name__}.execute() called before start()")
        if self._channel is None:
            with contextlib.suppress(Exception):
                await self._launch()
            if self._channel is None:
                return ExecResult(error=f"The {self.kind} REPL is not running.", crashed=True)
        channel = self._channel
        self._disk_hit = False
        watch = None if self.disk_limited_by_mount else asyncio.ensure_future(self._watch(channel))
        try:
            await channel.send({"op": "exec", "code": code})
            try:
                done = await self._reply(limit, "done")
            except TimeoutError:
                return await self._after_disk_check(await self._interrupt(channel, limit))
            result = self._to_result(done.get("result") or {})
        except asyncio.CancelledError:
            await self._shutdown_worker()  # nothing may outlive a cancelled completion
            raise
        except (WorkerCrashed, ConnectionError, OSError) as e:
            crashed = await self._restart_after_crash(f"The {self.kind} REPL worker died ({e}).")
            return await self._after_disk_check(crashed)
        finally:
            if watch is not None:
                watch.cancel()
            for task in list(self._calls):  # calls of an interrupted cell are moot
                task.cancel()
        return await self._after_disk_check(result)

    async def _watch(self, channel: WorkerChannel) -> None:
        """While a cell runs, measure the work dir; past ``disk_mb``, stop the cell: an
        interrupt first, a kill (and restart) if it ignores that for ``kill_grace``."""
        assert self.area is not None
        limit = self.disk_mb * _MB
        while True:
            await asyncio.sleep(POLL_SECONDS)
            used = await asyncio.to_thread(work_dir_usage, self.area.work, limit)
            if used > limit:
                self._disk_hit = True
                with contextlib.suppress(ConnectionError, OSError):
                    await channel.send({"op": "interrupt"})
                await asyncio.sleep(self.kill_grace)
                await channel.terminate()  # the cell goes on: it ends as a crash
                return

    async def _after_disk_check(self, result: ExecResult) -> ExecResult:
        """Measure the work dir after a cell (host-measured kinds) and explain disk errors."""
        if not self.disk_limited_by_mount and self.area is not None:
            limit = self.disk_mb * _MB
            used = await asyncio.to_thread(work_dir_usage, self.area.work, limit)
            if used > limit or self._disk_hit:
                await asyncio.to_thread(empty_dir, self.area.work)
                message = disk_limit_message(self.disk_mb, self.kind)
                result.error = message + (f" {result.error}" if result.crashed else "")
                result.timed_out = False
                return result
        note = disk_error_note(result.error or "", self.disk_mb, self._file_mb())
        if note:
            result.error = f"{result.error}\n{note}"
        return result

    def _file_mb(self) -> int:
        return min(self.file_size_mb or self.disk_mb, self.disk_mb)

    async def _interrupt(self, channel: WorkerChannel, limit: float | None) -> ExecResult:
        with contextlib.suppress(ConnectionError, OSError):
            await channel.send({"op": "interrupt"})
        try:
            done = await self._reply(self.kill_grace, "done")
        except (TimeoutError, WorkerCrashed):
            crashed = await self._restart_after_crash(
                f"Timeout: the cell exceeded {limit:g} s and did not stop when interrupted, "
                "so the worker was killed."
            )
            crashed.timed_out = True
            return crashed
        result = self._to_result(done.get("result") or {})
        result.timed_out = True
        result.error = (
            f"Timeout: the cell exceeded {limit:g} s and was interrupted. Variables set "
            "before the interrupt are kept. Work on smaller pieces or use llm_query_batched."
        )
        return result

    @staticmethod
    def _to_result(r: dict[str, Any]) -> ExecResult:
        final = r.get("final")
        return ExecResult(
            stdout=str(r.get("stdout") or ""),
            stderr=str(r.get("stderr") or ""),
            error=None if r.get("error") is None else str(r["error"]),
            final=None if final is None else str(final),
        )

    async def _query(self, message: dict[str, Any], expect: str) -> dict[str, Any] | None:
        """A request between cells; ``None`` when the worker is gone (it is restarted)."""
        async with self._lock:
            if self._channel is None:
                return None
            try:
                await self._channel.send(message)
                return await self._reply(self.start_timeout, expect)
            except (WorkerCrashed, TimeoutError, ConnectionError, OSError):
                await self._restart_after_crash("")
                return None

    async def get_variable(self, name: str) -> tuple[bool, str]:
        reply = await self._query({"op": "get_var", "name": name}, "var")
        if reply is None:
            return False, ""
        return bool(reply.get("found")), str(reply.get("value") or "")

    async def list_variables(self) -> dict[str, str]:
        reply = await self._query({"op": "list_vars"}, "vars")
        variables = reply.get("vars") if reply else None
        return {str(k): str(v) for k, v in variables.items()} if isinstance(variables, dict) else {}

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        channel = self._channel
        if channel is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.send({"op": "shutdown"}), 1)
        await self._shutdown_worker()
        if self.area is not None:
            await asyncio.to_thread(self.area.cleanup)
