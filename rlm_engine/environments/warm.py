"""Workers started ahead of time, so a completion does not wait ~35 ms for its REPL.

Starting a ``subprocess`` or ``sandbox`` worker is mostly the interpreter starting and
loading the worker's modules; none of it depends on the completion. So once a process has
started two environments of one kind (a batch, an agent loop, a test suite; not a one-off
``rlm run``), a background thread keeps ``pool_size()`` workers of that kind ready: spawned,
bootstrapped, waiting for their ``init`` frame. A completion takes one, writes its context
into the worker's own fresh work area and sends ``init`` (context, limits, Landlock,
set-up) exactly as after a cold start.

Isolation is unchanged: each warm worker serves ONE completion and is then discarded like
any other; it never ran model code before it was taken, it has its own uid and work area,
and everything that differs between completions arrives with ``init``. Workers are matched
on everything that shapes the process before ``init`` (``warm_key``). An idle worker costs
a process (~12 MB) and is dropped after ``IDLE_SECONDS``; it exits with the host (its
channel closes) and the janitor removes its area.

``RLM_WARM_WORKERS`` sets the pool size per kind (default 2; 0 turns warm start-up off).
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import os
import queue
import select
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rlm_engine.environments import bootstrap, protocol
from rlm_engine.environments.isolation import WorkArea, is_root

if TYPE_CHECKING:
    from rlm_engine.environments.process_worker import ProcessWorkerEnvironment

DEFAULT_POOL_SIZE = 2
IDLE_SECONDS = 300.0
_HELLO_TIMEOUT = 30.0


def pool_size() -> int:
    try:
        return max(0, int(os.environ.get("RLM_WARM_WORKERS", DEFAULT_POOL_SIZE)))
    except ValueError:
        return DEFAULT_POOL_SIZE


@dataclass
class WarmWorker:
    """A bootstrapped worker waiting for ``init``, with its own uid and empty work area."""

    proc: subprocess.Popen[bytes]
    area: WorkArea
    uid: int | None
    hello: dict[str, Any]
    born: float

    def alive(self) -> bool:
        return self.proc.poll() is None

    def discard(self) -> None:
        """Kill it and remove its area (it never ran anything, so that is all there is)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, 9)
        with contextlib.suppress(Exception):
            self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.area.cleanup()


def start_warm_worker(template: ProcessWorkerEnvironment) -> WarmWorker:
    """Spawn and bootstrap one worker like ``template`` would (blocking; background use)."""
    from rlm_engine.environments.channel import spawn_process

    uid = template._choose_uid()
    area = WorkArea.create_empty(uid if is_root() else None)
    proc: subprocess.Popen[bytes] | None = None
    try:
        template.uid = uid
        spawn = template._spawn_args(area)
        proc = spawn_process(spawn.argv, env=spawn.env, cwd=spawn.cwd, uid=uid)
        assert proc.stdin is not None and proc.stdout is not None
        frame = memoryview(bootstrap.bundle_frame())
        while frame:
            frame = frame[proc.stdin.write(frame) or 0 :]
        hello = _read_frame(proc.stdout.fileno(), _HELLO_TIMEOUT)
        if hello.get("op") != "hello":
            raise RuntimeError(f"expected a hello frame, got {hello.get('op')!r}")
        return WarmWorker(proc, area, uid, hello, time.monotonic())
    except BaseException:
        if proc is not None:
            WarmWorker(proc, area, uid, {}, 0.0).discard()
        else:
            area.cleanup()
        raise


def _read_frame(fd: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout

    def read_exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("the worker did not say hello in time")
            chunk = os.read(fd, n - len(data))
            if not chunk:
                raise RuntimeError("the worker exited during start-up")
            data += chunk
        return data

    return protocol.decode_body(read_exactly(protocol.decode_length(read_exactly(8))))


class WarmPool:
    """Ready workers by ``warm_key``; filled by a background thread once a kind is reused."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: dict[tuple[Any, ...], list[WarmWorker]] = {}
        self._starts: dict[tuple[Any, ...], int] = {}
        self._filling: set[tuple[Any, ...]] = set()
        self._broken: set[tuple[Any, ...]] = set()
        self._pid = os.getpid()
        self._jobs: queue.Queue[tuple[tuple[Any, ...], ProcessWorkerEnvironment, int]]
        self._jobs = queue.Queue()
        self._filler: threading.Thread | None = None

    def _ensure_filler(self) -> None:
        """One filler thread for the process's lifetime. It must outlive the workers it
        starts: bubblewrap's ``--die-with-parent`` fires when the spawning *thread* exits."""
        with self._lock:
            if self._filler is None or not self._filler.is_alive():
                self._filler = threading.Thread(
                    target=self._serve_jobs, name="rlm-warm-workers", daemon=True
                )
                self._filler.start()

    def _serve_jobs(self) -> None:
        while True:
            key, template, size = self._jobs.get()
            self._fill(key, template, size)

    def take(self, env: ProcessWorkerEnvironment) -> WarmWorker | None:
        """A ready worker for ``env`` (None: start cold), and keep the pool topped up."""
        size = pool_size()
        if size == 0:
            return None
        key = (os.getpid(), *env.warm_key())
        stale: list[WarmWorker] = []
        taken = None
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's workers are not ours
                self._ready, self._starts, self._pid = {}, {}, os.getpid()
                self._filling, self._broken = set(), set()
                self._jobs, self._filler = queue.Queue(), None
            now = time.monotonic()
            for k, workers in self._ready.items():
                keep = [w for w in workers if w.alive() and now - w.born < IDLE_SECONDS]
                stale += [w for w in workers if w not in keep]
                self._ready[k] = keep
            ready = self._ready.setdefault(key, [])
            if ready:
                taken = ready.pop(0)
            self._starts[key] = self._starts.get(key, 0) + 1
            fill = self._starts[key] >= 2 and key not in self._filling and key not in self._broken
            if fill:
                self._filling.add(key)
        if fill:
            template = copy.copy(env)  # only its options are read, on the filler thread
            self._jobs.put((key, template, size))
            self._ensure_filler()
        if stale:
            threading.Thread(target=_discard_all, args=(stale,), daemon=True).start()
        return taken

    def _fill(self, key: tuple[Any, ...], template: ProcessWorkerEnvironment, size: int) -> None:
        try:
            while True:
                with self._lock:
                    if len(self._ready.get(key, [])) >= size:
                        return
                worker = start_warm_worker(template)
                with self._lock:
                    self._ready.setdefault(key, []).append(worker)
        except Exception:  # this kind cannot start ahead of time here: start cold
            with self._lock:
                self._broken.add(key)
        finally:
            with self._lock:
                self._filling.discard(key)

    def drain(self) -> None:
        """Discard every idle worker (tests; also safe at any time)."""
        with self._lock:
            workers = [w for ws in self._ready.values() for w in ws]
            self._ready = {}
        _discard_all(workers)

    def idle(self, env: ProcessWorkerEnvironment | None = None) -> int:
        """Ready workers (for ``env``'s kind and options, or in all)."""
        with self._lock:
            if env is not None:
                return len(self._ready.get((os.getpid(), *env.warm_key()), []))
            return sum(len(ws) for ws in self._ready.values())


def _discard_all(workers: list[WarmWorker]) -> None:
    for worker in workers:
        worker.discard()


warm_pool = WarmPool()
atexit.register(warm_pool.drain)  # idle workers would exit anyway; this is tidier

__all__ = ["DEFAULT_POOL_SIZE", "IDLE_SECONDS", "WarmPool", "WarmWorker", "pool_size", "warm_pool"]
