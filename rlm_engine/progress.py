"""Progress of a running completion for the ``rlm`` command, built from ``on_event`` dicts.

A run can take minutes and hundreds of sub-calls, so the terminal shows where it is: on a
TTY a live status line (iteration, sub-calls in flight and done, tokens, cost, elapsed);
otherwise one plain line per root iteration, which reads well in CI logs and pipes.
Events may arrive from several threads, so state changes happen under a lock.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text


def fmt_tokens(n: int | None) -> str:
    n = int(n or 0)
    if n >= 1_000_000:
        return f"{n / 1_000_000:.2f}M"
    if n >= 10_000:
        return f"{n / 1000:.1f}k"
    return f"{n:,}"


def fmt_cost(c: float | None) -> str:
    if c is None:
        return "n/a"
    return f"${c:.4f}" if c < 10 else f"${c:.2f}"


def fmt_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    return f"{m}m{sec:02d}s"


@dataclass
class ProgressState:
    """What the display shows; updated by :meth:`apply` from engine events."""

    started: float = field(default_factory=time.monotonic)
    iteration: int = 0
    depth: int = 0
    activity: str = "starting"
    done: int = 0
    errors: int = 0
    tokens: int = 0
    calls: int = 0
    cost: float | None = None
    # Sub-calls/tokens at the start of the current root iteration, for per-iteration deltas.
    _iter_done: int = 0
    _iter_tokens: int = 0
    _iter_started: float = 0.0
    # Started-but-unfinished calls per function: an end event only settles a start of the
    # same function, because replayed calls (and rlm_query) end without a start event.
    _open: dict[str, int] = field(default_factory=dict)

    @property
    def in_flight(self) -> int:
        return sum(self._open.values())

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def apply(self, e: dict[str, Any]) -> None:
        kind, depth = e.get("event"), int(e.get("depth") or 0)
        usage = e.get("usage") or {}
        if usage:
            self.tokens = int(usage.get("total_tokens") or 0)
            self.calls = int(usage.get("calls") or 0)
            self.cost = usage.get("cost")
        if kind == "iteration_start":
            if depth == 0:
                self.iteration = int(e.get("iteration") or self.iteration + 1)
                self._iter_done, self._iter_tokens = self.done, self.tokens
                self._iter_started = time.monotonic()
            self.depth = depth
            self.activity = (
                "waiting for the root LM" if depth == 0 else f"child RLM at depth {depth}"
            )
        elif kind == "root_response":
            self.activity = "root LM answered"
        elif kind == "code_start":
            self.activity = "running code" if depth == 0 else f"running child code (depth {depth})"
        elif kind == "subcall_start":
            fn = str(e.get("function") or "")
            self._open[fn] = self._open.get(fn, 0) + 1
            self.activity = f"sub-calls ({fn or 'llm_query'})"
        elif kind == "subcall_end":
            fn = str(e.get("function") or "")
            if self._open.get(fn):
                self._open[fn] -= 1
            self.done += 1
            if e.get("error"):
                self.errors += 1
        elif kind == "final" and depth == 0:
            self.activity = f"finished: {e.get('status')}"

    def status_line(self) -> str:
        errors = f" ({self.errors} failed)" if self.errors else ""
        return (
            f"iteration {self.iteration} · sub-calls {self.in_flight} in flight, "
            f"{self.done} done{errors} · {fmt_tokens(self.tokens)} tokens · "
            f"{fmt_cost(self.cost)} · {fmt_seconds(self.elapsed)}"
        )

    def iteration_line(self, e: dict[str, Any]) -> str:
        subs = self.done - self._iter_done
        toks = self.tokens - self._iter_tokens
        took = time.monotonic() - (self._iter_started or self.started)
        final = " · FINAL" if e.get("final") else ""
        return (
            f"rlm: iteration {e.get('iteration', self.iteration)}: {subs} sub-calls, "
            f"{fmt_tokens(toks)} tokens, {fmt_seconds(took)} "
            f"(total {fmt_tokens(self.tokens)} tokens, {fmt_cost(self.cost)}, "
            f"{fmt_seconds(self.elapsed)}){final}"
        )


class Progress:
    """An ``on_event`` handler; use as a context manager around the completion."""

    def __init__(self, stream: IO[str], *, live: bool | None = None) -> None:
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self.state = ProgressState()
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._spinner = Spinner("dots", style="cyan")

    def __enter__(self) -> Progress:
        if self.live:
            console = Console(file=self.stream, stderr=True)
            self._live = Live(self, console=console, refresh_per_second=8, transient=True)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __rich__(self) -> Group:
        with self._lock:
            line = self.state.status_line()
            activity = self.state.activity
        self._spinner.text = Text.assemble(("rlm ", "bold"), line)
        return Group(self._spinner, Text(f"  {activity}", style="dim"))

    def __call__(self, e: dict[str, Any]) -> None:
        with self._lock:
            self.state.apply(e)
            if self.live or e.get("depth"):
                return
            if e.get("event") == "iteration_end":
                line = self.state.iteration_line(e)
            elif e.get("event") == "iteration_start" and self.state.iteration == 1:
                line = "rlm: iteration 1: waiting for the root LM"
            else:
                return
        print(line, file=self.stream, flush=True)
