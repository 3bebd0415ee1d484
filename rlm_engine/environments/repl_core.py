"""REPL semantics shared by every environment. Standard library only.

Isolated workers copy this file next to ``worker.py`` and run it with any ``python3``, so
it must not import anything from ``rlm_engine``. It owns the namespace, the REPL-only
functions (FINAL, FINAL_VAR, SHOW_VARS), output capture with a memory cap, and error text
the root LM can act on.

Three ways for code to finish, the same in every environment: ``FINAL(answer)``,
``FINAL_VAR(name)``, and the convention of the paper authors' library (which models tuned
on its trajectories write): the REPL starts with ``answer = {"content": "", "ready": False}``
and a cell that leaves ``answer["ready"]`` true ends the run with ``answer["content"]``.
"""

from __future__ import annotations

import ast
import builtins
import io
import linecache
import sys
import threading
import traceback
from collections.abc import Callable
from types import CodeType
from typing import TYPE_CHECKING, Any, TextIO, TypedDict

if TYPE_CHECKING:  # typing.TypeGuard is 3.10+; the worker may run an older python3
    from typing import TypeGuard


class CellInterrupted(BaseException):  # noqa: N818 - raised into a running cell
    """Raised into a cell's thread to stop it (per-cell timeout in the local environment)."""


class HostCallError(Exception):
    """A host function failed; the message is meant for the root LM."""


class CellOutput(TypedDict, total=False):
    """What ``run_cell`` reports (an interrupted cell may report only ``error``)."""

    stdout: str
    stderr: str
    error: str | None
    final: str | None
    interrupted: bool


class _CappedBuffer(io.TextIOBase):
    """Keeps the first and last ``limit // 2`` characters, so spam cannot exhaust memory."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 2)
        self.head: list[str] = []
        self.head_len = 0
        self.tail = ""
        self.total = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            s = str(s)
        n = len(s)
        self.total += n
        half = self.limit // 2
        if self.head_len < half:
            take = s[: half - self.head_len]
            self.head.append(take)
            self.head_len += len(take)
            s = s[len(take) :]
        if s:
            self.tail = (self.tail + s[-half:])[-half:]
        return n

    def getvalue(self) -> str:
        head = "".join(self.head)
        dropped = self.total - len(head) - len(self.tail)
        if dropped > 0:
            return f"{head}\n[... {dropped:,} characters of output dropped ...]\n{self.tail}"
        return head + self.tail


class _ThreadRoutedStream(io.TextIOBase):
    """A ``sys.stdout`` stand-in that sends each thread's writes to that thread's buffer.

    Several cells may run at once in one process (child RLMs, concurrent completions),
    so redirecting the global stream per cell would mix their outputs.
    """

    def __init__(self, fallback: TextIO) -> None:
        self.fallback = fallback
        self.local = threading.local()

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        target: _CappedBuffer | None = getattr(self.local, "buffer", None)
        return (target or self.fallback).write(s)

    def flush(self) -> None:
        target = getattr(self.local, "buffer", None)
        if target is None:
            self.fallback.flush()

    @property
    def encoding(self) -> str:  # type: ignore[override]  # TextIOBase declares an attribute
        return "utf-8"

    def isatty(self) -> bool:
        return False


_install_lock = threading.Lock()
# CPython < 3.11.8 / 3.12.1 keeps the AST converters' recursion depth in interpreter-wide
# state, so ast.parse / compile in two threads at once can fail with "AST constructor
# recursion depth mismatch" (gh-106905; seen here when DSPy parsed on one thread while a
# cell compiled on another). We serialize our own compiles and retry the rare collision.
_COMPILE_LOCK = threading.Lock()


def _routed(name: str) -> _ThreadRoutedStream:
    with _install_lock:
        current = getattr(sys, name)
        if not isinstance(current, _ThreadRoutedStream):
            current = _ThreadRoutedStream(current)
            setattr(sys, name, current)
        return current


class ReplCore:
    """A persistent namespace holding ``context`` plus the functions REPL code may call.

    ``call_host(name, args, kwargs)`` performs a host function call (an LM sub-call, a
    tool) and blocks until its result arrives; how it travels is the environment's job.
    """

    REPL_NAMES = ("FINAL", "FINAL_VAR", "SHOW_VARS")
    #: The variable of the ``answer["content"]`` / ``answer["ready"]`` finishing convention.
    ANSWER_NAME = "answer"

    def __init__(
        self,
        context: Any,
        call_host: Callable[[str, list[Any], dict[str, Any]], Any],
        host_functions: list[str],
        max_output_chars: int = 1_000_000,
    ) -> None:
        self.call_host = call_host
        self.max_output_chars = max_output_chars
        self.final: str | None = None
        self.cell_count = 0
        self.namespace: dict[str, Any] = {"__name__": "__rlm_repl__", "__builtins__": builtins}
        self.namespace["context"] = context
        for name in host_functions:
            self.namespace[name] = self._host_stub(name)
        self.namespace["FINAL"] = self._final
        self.namespace["FINAL_VAR"] = self._final_var
        self.namespace["SHOW_VARS"] = self._show_vars
        # Not reserved: code may bind ``answer`` to anything (``answer = llm_query(...)``).
        self.namespace[self.ANSWER_NAME] = {"content": "", "ready": False}
        self.reserved = {"context", "__name__", "__builtins__", *host_functions, *self.REPL_NAMES}

    # -- functions visible in the REPL -------------------------------------------------
    def _host_stub(self, name: str) -> Callable[..., Any]:
        def stub(*args: Any, **kwargs: Any) -> Any:
            return self.call_host(name, list(args), kwargs)

        stub.__name__ = stub.__qualname__ = name
        return stub

    def _final(self, answer: Any) -> None:
        self.final = answer if isinstance(answer, str) else str(answer)

    def _final_var(self, name_or_value: Any) -> None:
        if isinstance(name_or_value, str):
            name = name_or_value.strip().strip("'\"")
            if name in self.namespace and name not in self.reserved:
                found, text = self._value_text(name, self.namespace[name])
                if found:
                    self.final = text
                    return
            if name.isidentifier():
                raise NameError(
                    f"FINAL_VAR({name!r}): no REPL variable named {name!r}. "
                    f"Defined: {', '.join(sorted(self.list_variables())) or 'none'}."
                )
        self.final = name_or_value if isinstance(name_or_value, str) else str(name_or_value)

    def _show_vars(self) -> None:
        variables = self.list_variables()
        if not variables:
            print("No variables defined yet (besides `context`).")
        for name, kind in sorted(variables.items()):
            print(f"{name}: {kind}")

    # -- introspection --------------------------------------------------------------
    def list_variables(self) -> dict[str, str]:
        out = {}
        for k, v in self.namespace.items():
            if k in self.reserved or k.startswith("_") or type(v).__name__ == "module":
                continue
            if not self._value_text(k, v)[0]:  # the untouched ``answer`` holder
                continue
            out[k] = type(v).__name__
        return out

    def get_variable(self, name: str) -> tuple[bool, str]:
        name = name.strip().strip("'\"")
        if name in self.namespace and name not in self.reserved - {"context"}:
            return self._value_text(name, self.namespace[name])
        return False, ""

    def _value_text(self, name: str, value: Any) -> tuple[bool, str]:
        """``(found, text)`` of a variable; ``answer`` in the finishing convention's shape
        stands for its ``content``, and is not there at all while that is still empty."""
        if name == self.ANSWER_NAME and _is_answer_holder(value):
            content = value["content"]
            if content is None or content == "":
                return False, ""
            value = content
        return True, value if isinstance(value, str) else str(value)

    def _take_ready_answer(self) -> None:
        """End the cell with ``answer["content"]`` when it set ``answer["ready"]``.

        Goes through the namespace's ``FINAL``, so a setup that checks answers (DSPy's
        typed outputs) checks this one too. ``ready`` is consumed: a run that is reopened
        (an answer that failed validation) must set it again.
        """
        holder = self.namespace.get(self.ANSWER_NAME)
        if self.final is not None or not _is_answer_holder(holder) or not holder["ready"]:
            return
        holder["ready"] = False
        finish = self.namespace.get("FINAL")
        (finish if callable(finish) else self._final)(holder["content"])

    # -- execution ------------------------------------------------------------------
    def run_setup(self, code: str) -> str | None:
        """Run the environment's setup cell; returns its error text, or None.

        Functions and classes it (re)defines join the reserved names: hidden from
        SHOW_VARS and FINAL_VAR like the built-in REPL functions.
        """
        before = dict(self.namespace)
        result = self.run_cell(code)
        self.cell_count = 0
        for name, value in self.namespace.items():
            if callable(value) and before.get(name) is not value:
                self.reserved.add(name)
        return result["error"]

    def run_cell(self, code: str) -> CellOutput:
        """Run one cell; never raises for errors in user code (they become ``error``)."""
        self.cell_count += 1
        self.final = None
        filename = f"<cell {self.cell_count}>"
        out_buf = _CappedBuffer(self.max_output_chars)
        err_buf = _CappedBuffer(self.max_output_chars)
        stdout, stderr = _routed("stdout"), _routed("stderr")
        stdout.local.buffer, stderr.local.buffer = out_buf, err_buf
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        try:
            error, interrupted = self._guarded(lambda: self._exec(code, filename), filename)
            if not interrupted:
                # Like FINAL(...) before an exception, an answer marked ready still counts.
                late, interrupted = self._guarded(self._take_ready_answer, filename)
                error = "\n".join(e for e in (error, late) if e) or None
        finally:
            stdout.local.buffer = stderr.local.buffer = None
        return {
            "stdout": out_buf.getvalue(),
            "stderr": err_buf.getvalue(),
            "error": error,
            "final": self.final,
            "interrupted": interrupted,
        }

    def _guarded(self, step: Callable[[], None], filename: str) -> tuple[str | None, bool]:
        """Run ``step``; returns ``(error text for the LM, interrupted)``, never raises."""
        try:
            step()
        except (CellInterrupted, KeyboardInterrupt):
            return "Interrupted: the cell ran past its time limit and was stopped.", True
        except SystemExit as e:
            return f"SystemExit({e.code}) was raised; exiting the REPL is not allowed.", False
        except BaseException as e:  # user code may raise anything; report it to the LM
            return self._format_error(e, filename), False
        return None, False

    @staticmethod
    def _compile(code: str, filename: str) -> tuple[CodeType | None, CodeType | None]:
        """Code objects for the cell body and for its last expression (shown like Jupyter)."""
        for attempt in range(3):
            try:
                with _COMPILE_LOCK:
                    tree = ast.parse(code, filename=filename, mode="exec")
                    last_expr = None
                    last = tree.body[-1] if tree.body else None
                    if isinstance(last, ast.Expr):
                        tree.body.pop()
                        last_expr = ast.Expression(last.value)
                    body = compile(tree, filename, "exec") if tree.body else None
                    tail = compile(last_expr, filename, "eval") if last_expr is not None else None
                return body, tail
            except SystemError as e:  # gh-106905: a transient race, not a property of the code
                if "recursion depth mismatch" not in str(e) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _exec(self, code: str, filename: str) -> None:
        body, tail = self._compile(code, filename)
        if body is not None:
            exec(body, self.namespace)
        if tail is not None:
            value = eval(tail, self.namespace)
            if value is not None:
                print(repr(value))

    @staticmethod
    def _format_error(e: BaseException, filename: str) -> str:
        if isinstance(e, SyntaxError):
            return "".join(traceback.format_exception_only(type(e), e)).rstrip()
        tb = e.__traceback__
        # Drop the frames of this module so the LM sees only its own code.
        while tb is not None and tb.tb_frame.f_code.co_filename != filename:
            tb = tb.tb_next
        lines = traceback.format_exception(type(e), e, tb)
        return "".join(lines).rstrip()


def _is_answer_holder(value: Any) -> TypeGuard[dict[str, Any]]:
    """A dict in the shape of the ``answer`` convention: ``content`` and ``ready`` keys."""
    return isinstance(value, dict) and "content" in value and "ready" in value
