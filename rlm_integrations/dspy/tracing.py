"""``RLMModule``'s code cells as DSPy tool calls, so DSPy callbacks see the whole run.

Root turns and sub-calls already are DSPy calls (the ``root`` / ``sub_query`` predictors
and their ``dspy.LM``), so every ``dspy.utils.callback.BaseCallback`` sees them with their
inputs and outputs (``on_module_*``, ``on_adapter_*``, ``on_lm_*``); bound tools are
``dspy.Tool`` calls. What DSPy cannot see is the code the root wrote running in the REPL:
:class:`CellToolCalls` turns the engine's ``code_start`` / ``code_end`` events into
``on_tool_start`` / ``on_tool_end`` of a tool named ``repl`` (code in, output out,
clipped and redacted like every trace, an exception when the cell raised), so MLflow's
DSPy autologging and other callback-based tracers show each cell between the turns.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from typing import Any

import dspy
from dspy.adapters.types.tool import Tool

from rlm_engine.trace_content import TraceText


class ReplCellError(RuntimeError):
    """A code cell that raised, as the exception of its ``on_tool_end``."""


def _repl(code: str) -> str:
    """Runs one code cell in the RLM's Python REPL (run by the engine, not called here)."""
    raise RuntimeError("the REPL tool stands for the engine's cells; it is not called")


#: The ``instance`` of each cell's tool call.
REPL_TOOL = Tool(_repl, name="repl", desc="Runs a code cell of the RLM in its Python REPL.")


class CellToolCalls:
    """An ``on_event`` handler: each top-level or child code cell as a DSPy tool call."""

    def __init__(self, callbacks: list[Any], secrets: list[str] | None = None) -> None:
        self.callbacks = list(callbacks)
        self._text = TraceText(secrets) if self.callbacks else None
        self._open: dict[str, str] = {}  # session run id -> the open cell's call id
        self._lock = threading.Lock()

    @classmethod
    def for_call(cls, module: Any) -> CellToolCalls | None:
        """The handler for one call of ``module``: DSPy's configured callbacks and the
        module's own, or None when there are none (then nothing is built per event)."""
        callbacks = [*(dspy.settings.get("callbacks") or []), *(module.callbacks or [])]
        return cls(callbacks) if callbacks else None

    def __call__(self, e: dict[str, Any]) -> None:
        kind = e.get("event")
        if kind not in ("code_start", "code_end") or self._text is None:
            return
        run = str(e.get("run_id"))
        with self._lock:
            if kind == "code_start":
                call_id = self._open[run] = uuid.uuid4().hex
            else:
                call_id = self._open.pop(run, "")
        if kind == "code_start":
            inputs = {"code": self._text(e.get("code")), "depth": int(e.get("depth") or 0)}
            for cb in self.callbacks:
                with contextlib.suppress(Exception):  # a broken callback must not break the run
                    cb.on_tool_start(call_id=call_id, instance=REPL_TOOL, inputs=inputs)
        elif call_id:
            output = self._text(e.get("output"))
            error = ReplCellError(f"{self._text(e.get('error'))}") if e.get("error") else None
            for cb in self.callbacks:
                with contextlib.suppress(Exception):
                    cb.on_tool_end(call_id=call_id, outputs=output, exception=error)


__all__ = ["REPL_TOOL", "CellToolCalls", "ReplCellError"]
