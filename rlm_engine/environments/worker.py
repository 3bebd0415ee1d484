"""The REPL worker process used by the ``subprocess``, ``sandbox`` and ``docker`` environments.

Standard library only: the host ships this file, ``protocol.py`` and ``repl_core.py`` to any
``python3`` (see ``bootstrap.py``), so a stock image works. REPL semantics come from
``ReplCore``; this module only adds the transport:

- Frames travel over private duplicates of the original stdin/stdout. Before any user code
  runs, fd 0 is pointed at /dev/null and fds 1/2 at a pipe drained by a thread, so even
  ``os.write(1, ...)`` or a child process's output lands in the cell's output, never inside
  the protocol stream.
- A host function call sends one ``call`` frame and blocks until its ``result`` arrives.
  A reader thread routes results by id, so calls from user threads work too.
- An ``interrupt`` frame raises ``KeyboardInterrupt`` in the running cell (state survives);
  a worker that ignores it is killed by the host.
- Resource limits are applied after the context is loaded and before the first cell.
- When the host says it is safe, processes a cell started are killed when the cell ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import resource
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:  # the same modules, as the type checker finds them
    from rlm_engine.environments import landlock, protocol, repl_core
else:
    try:  # shipped as top-level modules next to this file
        import landlock
        import protocol
        import repl_core
    except ImportError:  # imported from the installed package (tests, debugging)
        from rlm_engine.environments import landlock, protocol, repl_core

_PR_SET_CHILD_SUBREAPER = 36
_MARK_PREFIX = b"\x00\x01rlm-sync:"
_MARK_SUFFIX = b"\x01\x00"


class FdOutput:
    """Collects what is written to fds 1 and 2 (C code, child processes) with a byte cap."""

    def __init__(self, limit_bytes: int) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self._sync_fd = os.dup(self.write_fd)
        self._limit = max(limit_bytes, 0)
        self._lock = threading.Lock()
        self._buf = bytearray()
        self._total = 0
        self._pending = b""
        self._marks: dict[bytes, threading.Event] = {}
        self._seq = 0
        threading.Thread(target=self._drain, name="rlm-fd-drain", daemon=True).start()

    def _keep(self, data: bytes) -> None:
        self._total += len(data)
        room = self._limit - len(self._buf)
        if room > 0:
            self._buf += data[:room]

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.read_fd, 1 << 16)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                data = self._pending + data
                self._pending = b""
                while True:
                    start = data.find(_MARK_PREFIX)
                    if start < 0:
                        break
                    end = data.find(_MARK_SUFFIX, start + len(_MARK_PREFIX))
                    if end < 0:
                        break
                    self._keep(data[:start])
                    token = data[start + len(_MARK_PREFIX) : end]
                    event = self._marks.pop(token, None)
                    if event is not None:
                        event.set()
                    data = data[end + len(_MARK_SUFFIX) :]
                self._pending = _possible_mark_start(data)
                self._keep(data[: len(data) - len(self._pending)])

    def collect(self, wait: float = 2.0) -> str:
        """Everything written since the last call (in order, thanks to a sync mark)."""
        self._seq += 1
        token = str(self._seq).encode()
        event = threading.Event()
        with self._lock:
            self._marks[token] = event
        try:
            os.write(self._sync_fd, _MARK_PREFIX + token + _MARK_SUFFIX)
            event.wait(wait)
        except OSError:
            pass
        with self._lock:
            self._marks.pop(token, None)
            data, total = bytes(self._buf), self._total
            self._buf.clear()
            self._total = 0
        text = data.decode("utf-8", "replace")
        if total > len(data):
            text += f"\n[... {total - len(data):,} bytes of process-level output dropped ...]\n"
        return text


def _possible_mark_start(data: bytes) -> bytes:
    """The tail of ``data`` that may be the start of a sync mark split across reads."""
    start = data.find(_MARK_PREFIX)
    if start >= 0:  # a prefix without its suffix yet
        return data[start:] if len(data) - start < 64 else b""
    for k in range(min(len(_MARK_PREFIX) - 1, len(data)), 0, -1):
        if data.endswith(_MARK_PREFIX[:k]):
            return data[-k:]
    return b""


class Worker:
    """Owns the protocol channel and the ``ReplCore``; runs cells in the main thread."""

    def __init__(self, proto_in: BinaryIO, proto_out_fd: int) -> None:
        self._in = proto_in
        self._out_fd = proto_out_fd
        self._send_lock = threading.Lock()
        self._commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self._pending: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._pending_lock = threading.Lock()
        self._next_id = 0
        self._in_cell = False
        self._main_ident = threading.main_thread().ident
        self.core: repl_core.ReplCore | None = None
        self.output: FdOutput | None = None
        self._reap_all = False
        self._devnull = os.open(os.devnull, os.O_RDWR)

    # -- transport ------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        frame = protocol.encode(message)
        with self._send_lock:
            view = memoryview(frame)
            while view:
                written = os.write(self._out_fd, view)
                view = view[written:]

    def _read_loop(self) -> None:
        """Route frames: results to the waiting call, interrupts to the cell, rest to main."""
        try:
            while True:
                message = protocol.read_frame(self._in)
                if message is None:
                    break
                op = message["op"]
                if op == "result":
                    with self._pending_lock:
                        waiter = self._pending.get(message.get("id", -1))
                    if waiter is not None:
                        waiter.put(message)
                elif op == "interrupt":
                    if self._in_cell and self._main_ident is not None:
                        if self._reap_all:  # a fork bomb would starve the interrupt
                            with contextlib.suppress(OSError):
                                os.kill(-1, signal.SIGKILL)
                        signal.pthread_kill(self._main_ident, signal.SIGINT)
                else:
                    self._commands.put(message)
        except (OSError, protocol.ProtocolError):
            pass
        # The host is gone (or closed the channel): do not let a running cell outlive it.
        if self._reap_all:
            with contextlib.suppress(OSError):
                os.kill(-1, signal.SIGKILL)
        os._exit(0)

    def call_host(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        with self._pending_lock:
            self._next_id += 1
            call_id = self._next_id
            waiter: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=1)
            self._pending[call_id] = waiter
        try:
            self.send({"op": "call", "id": call_id, "name": name, "args": args, "kwargs": kwargs})
            reply = waiter.get()  # interruptible: SIGINT raises KeyboardInterrupt here
        finally:
            with self._pending_lock:
                self._pending.pop(call_id, None)
        if reply.get("ok"):
            return reply.get("value")
        raise repl_core.HostCallError(str(reply.get("error") or f"{name} failed"))

    # -- commands -------------------------------------------------------------------
    def _init(self, message: dict[str, Any]) -> dict[str, Any] | None:
        for path in message.get("sys_path", []):
            if path not in sys.path:
                sys.path.append(path)
        context = load_context(message.get("context") or {})
        limit = int(message.get("max_output_chars", 1_000_000))
        self.output = FdOutput(limit)
        self._redirect_fds()
        self.core = repl_core.ReplCore(
            context, self.call_host, list(message.get("functions", [])), limit
        )
        del context
        setup = message.get("setup")
        if setup:
            error = self.core.run_setup(setup)
            if error:
                raise RuntimeError(f"the REPL setup code failed: {error}")
        apply_limits(message.get("limits") or {})
        confinement = confine(message.get("landlock"))
        policy = message.get("reap", "none")
        self._reap_all = (
            policy == "kill_all"
            or (policy == "if_scoped" and bool(confinement and confinement.get("scoped")))
            # Init of its own PID namespace (``command`` over ``docker run``): every other
            # process it may signal was started there by its cells.
            or (policy == "if_init" and os.getpid() == 1)
        )
        return confinement

    def _redirect_fds(self) -> None:
        """fd 0 -> /dev/null, fds 1/2 -> the drained pipe; redone before every cell."""
        assert self.output is not None
        os.dup2(self._devnull, 0)
        os.dup2(self.output.write_fd, 1)
        os.dup2(self.output.write_fd, 2)

    def _core(self) -> repl_core.ReplCore:
        if self.core is None:  # the host always sends init first
            raise RuntimeError("the REPL is used before init")
        return self.core

    def _exec(self, code: str) -> repl_core.CellOutput:
        assert self.output is not None
        core = self._core()
        self._redirect_fds()
        self._in_cell = True
        try:
            result = core.run_cell(code)
        except KeyboardInterrupt:  # landed between run_cell's handler and its return
            result = {"error": "Interrupted.", "interrupted": True}
        finally:
            self._in_cell = False
        if self._reap_all:
            reap_strays()
        for stream in (sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        process_output = self.output.collect()
        if process_output:
            result["stdout"] = (result.get("stdout") or "") + process_output
        return result

    def serve(self) -> None:
        signal.signal(signal.SIGINT, self._on_sigint)
        threading.Thread(target=self._read_loop, name="rlm-proto-reader", daemon=True).start()
        self.send({"op": "hello", "pid": os.getpid(), "python": sys.version.split()[0]})
        while True:
            message = self._commands.get()
            op = message["op"]
            try:
                if op == "init":
                    try:
                        confinement = self._init(message)
                    except Exception as e:
                        self.send({"op": "init_error", "error": f"{type(e).__name__}: {e}"})
                        return
                    self.send({"op": "ready", "confinement": confinement})
                elif op == "exec":
                    self.send({"op": "done", "result": self._exec(message.get("code", ""))})
                elif op == "get_var":
                    found, value = self._core().get_variable(message.get("name", ""))
                    self.send({"op": "var", "found": found, "value": value})
                elif op == "list_vars":
                    self.send({"op": "vars", "vars": self._core().list_variables()})
                elif op == "shutdown":
                    return
            except KeyboardInterrupt:  # an interrupt that arrived after the cell ended
                self.send({"op": "done", "result": {"error": "Interrupted.", "interrupted": True}})

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._in_cell:
            raise KeyboardInterrupt


def load_context(spec: dict[str, Any]) -> Any:
    """Read the context file the host wrote: text for ``str``, JSON for anything else."""
    kind, path = spec.get("kind", "none"), spec.get("path")
    if kind == "none" or not path:
        return None
    if kind == "text":
        with open(path, encoding="utf-8", errors="surrogatepass", newline="") as f:
            return f.read()
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _address_space_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def apply_limits(limits: dict[str, Any]) -> None:
    """Lower rlimits; the address-space cap is the loaded interpreter plus ``memory_bytes``."""

    def lower(which: int, value: int | None, hard_extra: int = 0) -> None:
        if value is None:
            return
        _, hard = resource.getrlimit(which)
        new_hard = value + hard_extra
        if hard != resource.RLIM_INFINITY:
            new_hard = min(new_hard, hard)
        resource.setrlimit(which, (min(value, new_hard), new_hard))

    lower(resource.RLIMIT_CORE, 0)
    if limits.get("memory_bytes") is not None:
        lower(resource.RLIMIT_AS, _address_space_bytes() + int(limits["memory_bytes"]))
    lower(resource.RLIMIT_CPU, limits.get("cpu_seconds"), hard_extra=5)
    lower(resource.RLIMIT_FSIZE, limits.get("file_size_bytes"))
    lower(resource.RLIMIT_NPROC, limits.get("max_processes"))


def reap_strays() -> None:
    """Kill every other process this worker may signal, then collect them.

    Only used when those are exactly the processes the cells started: a uid of its own,
    a PID namespace, or a Landlock signal scope. So nothing a cell starts (a fork bomb, a
    forgotten background job) outlives the cell. As child subreaper the worker inherits
    orphaned descendants, so "no children left" means "no descendants left".
    """
    for _ in range(200):  # bounded (~1 s) should something refuse to die
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)
        try:
            while os.waitpid(-1, os.WNOHANG)[0] != 0:
                pass
        except ChildProcessError:
            return
        time.sleep(0.005)


def confine(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """Apply the host's Landlock allow-list; ``required`` turns "unsupported" into an error."""
    if not spec:
        return None
    try:
        report = landlock.restrict(list(spec.get("read", [])), list(spec.get("write", [])))
    except OSError as e:
        report = {"abi": -1, "filesystem": False, "tcp": False, "scoped": False, "error": str(e)}
    if spec.get("required") and not report["filesystem"]:
        raise RuntimeError(f"Landlock was required but could not be applied: {report}")
    return report


def become_subreaper() -> None:
    """Adopt orphaned descendants, so killed ones are reaped here at once (not by an init
    that may reap slowly) and a fork bomb's zombies do not keep holding process slots."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def main() -> None:
    """Take over fds 0/1 for the protocol and serve until the host closes the channel."""
    become_subreaper()
    # The bootstrap read its bundle with os.read and the host sends nothing until our
    # hello, so no buffered input is lost by switching to a private duplicate of fd 0.
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out_fd = os.dup(1)
    # Nothing may write to the real fd 1 any more, not even a stray print before init.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    Worker(proto_in, proto_out_fd).serve()
    os._exit(0)


if __name__ == "__main__":
    main()
