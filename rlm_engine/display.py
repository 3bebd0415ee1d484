"""``verbose=True``: a readable, colour trace of each iteration on the terminal (rich)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text


class VerbosePrinter:
    """An ``on_event`` handler that prints iterations, code, output and sub-calls."""

    def __init__(self, console: Console | None = None, max_chars: int = 2_000) -> None:
        self.console = console or Console(stderr=True)
        self.max_chars = max_chars
        self._subcalls = 0

    def _clip(self, s: str) -> str:
        return s if len(s) <= self.max_chars else s[: self.max_chars] + f"\n… ({len(s):,} chars)"

    def __call__(self, e: dict[str, Any]) -> None:
        kind, depth = e.get("event"), e.get("depth", 0)
        indent = "  " * depth
        c = self.console
        if kind == "iteration_start":
            self._subcalls = 0
            c.rule(f"{indent}depth {depth} · iteration {e['iteration']}", style="cyan")
        elif kind == "root_response":
            c.print(
                Panel(
                    self._clip(e.get("text", "")),
                    title=f"{indent}root LM",
                    subtitle=f"{e.get('input_tokens', 0)} in / {e.get('output_tokens', 0)} out",
                    border_style="blue",
                )
            )
        elif kind == "code_end":
            c.print(
                Syntax(
                    self._clip(e.get("code", "")), "python", theme="ansi_dark", line_numbers=False
                )
            )
            c.print(
                Panel(
                    Text(self._clip(e.get("output", ""))),
                    title=f"{indent}REPL output",
                    subtitle=f"{e.get('subcalls', 0)} sub-calls",
                    border_style="green",
                )
            )
        elif kind == "subcall_end":
            self._subcalls += 1
            tag = "replayed" if e.get("replayed") else f"{e.get('latency', 0):.2f}s"
            status = (
                f"[red]{e['error'][:120]}[/red]"
                if e.get("error")
                else repr(e.get("response", "")[:80])
            )
            c.print(f"{indent}  ↳ {e.get('function')} [{tag}] {status}", highlight=False)
        elif kind == "iteration_end":
            u = e.get("usage", {})
            c.print(
                f"{indent}[dim]usage so far: {u.get('calls', 0)} calls, "
                f"{u.get('total_tokens', 0):,} tokens[/dim]"
            )
        elif kind == "final":
            style = "bold green" if e.get("status") == "final" else "bold yellow"
            c.print(
                Panel(
                    self._clip(str(e.get("response"))),
                    title=f"{indent}{e.get('status')}",
                    border_style=style,
                )
            )


def event_handler(
    *handlers: Callable[[dict[str, Any]], None] | None, verbose: bool = False
) -> Callable[[dict[str, Any]], None] | None:
    """One ``on_event`` callback from several (None entries ignored), plus the verbose printer.

    Each handler is isolated: one that raises does not keep the others from seeing an event.
    """
    chosen = [h for h in handlers if h is not None]
    if verbose:
        chosen.append(VerbosePrinter())
    if len(chosen) <= 1:
        return chosen[0] if chosen else None

    def all_handlers(event: dict[str, Any]) -> None:
        for h in chosen:
            with contextlib.suppress(Exception):
                h(event)

    return all_handlers
