"""DSPy callbacks see an ``RLMModule`` run: every root turn and sub-call (with inputs and
outputs) and every code cell, as a ``repl`` tool call, in the order they happened."""

from __future__ import annotations

from typing import Any

import dspy
from dspy.utils.callback import BaseCallback
from dspy_support import haystack

from rlm_engine.subcalls import LM_FUNCTIONS
from rlm_integrations.dspy import RLMModule


class Vault(dspy.Signature):
    """Answer the question about the document. Use a map-reduce strategy."""

    document: str = dspy.InputField(desc="a long text")
    question: str = dspy.InputField()
    answer: int = dspy.OutputField(desc="the number asked for")


class Recorder(BaseCallback):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self.events.append(("module_start", type(instance).__name__, inputs))

    def on_module_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        self.events.append(("module_end", "", outputs))

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self.events.append(("lm_start", str(instance.model), inputs))

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        self.events.append(("lm_end", "", outputs))

    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self.events.append(("tool_start", instance.name, inputs))

    def on_tool_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        self.events.append(("tool_end", "", (outputs, exception)))


def test_callbacks_see_turns_sub_calls_and_cells(with_root_lm: Any, scripted_server: Any) -> None:
    rec = Recorder()
    text = haystack("The access code for vault 17 is 4821.")
    with dspy.context(callbacks=[rec]):
        pred = RLMModule(Vault)(document=text, question="What is the access code for vault 17?")
    assert pred.answer == 4821
    ev = rec.events
    assert ev[0][:2] == ("module_start", "RLMModule") and ev[-1][0] == "module_end"
    iterations = pred.trajectory
    cells = [b for it in iterations for b in it["code_blocks"]]
    calls = [c for b in cells for c in b["subcalls"] if c["function"] in LM_FUNCTIONS]
    # Root turns: the root predictor, its LM call, its output (reasoning and code).
    turns = [
        i for i, e in enumerate(ev) if e[0] == "module_start" and "iteration" in e[2]["kwargs"]
    ]
    assert len(turns) == len(iterations) == 2
    # Sub-calls: the sub-call predictor with its prompt in, its response out.
    subs = [e for e in ev if e[0] == "module_start" and "prompt" in e[2]["kwargs"]]
    assert len(subs) == len(calls) == 9
    responses = [e[2].response for e in ev if e[0] == "module_end" and "response" in e[2]]
    assert sorted(responses) == sorted(c["response"] for c in calls)
    assert sum(e[0] == "lm_start" for e in ev) == len(turns) + len(subs)
    # Cells: one repl tool call each, after the turn that wrote it, holding its sub-calls.
    starts = [i for i, e in enumerate(ev) if e[0] == "tool_start"]
    ends = [i for i, e in enumerate(ev) if e[0] == "tool_end"]
    assert [ev[i][1] for i in starts] == ["repl"] * len(cells) and len(ends) == len(cells)
    for n, (start, end) in enumerate(zip(starts, ends, strict=True)):
        assert turns[n] < start < end and (n + 1 == len(turns) or end < turns[n + 1])
        assert ev[start][2]["code"] == cells[n]["code"]
        inside = [e for e in ev[start:end] if e[0] == "module_start" and "prompt" in e[2]["kwargs"]]
        assert len(inside) == sum(c["function"] in LM_FUNCTIONS for c in cells[n]["subcalls"])
        output, error = ev[end][2]
        assert error is None and cells[n]["stdout"].strip() in output


def test_conversation_turns_show_their_cells_too(with_root_lm: Any, scripted_server: Any) -> None:
    rec = Recorder()
    text = haystack("The access code for vault 17 is 4821.")
    rlm = RLMModule(Vault, conversation=True)
    with dspy.context(callbacks=[rec]):
        pred = rlm(document=text, question="What is the access code for vault 17?")
    rlm.reset_conversation()
    assert pred.answer == 4821
    cells = [b for it in pred.trajectory for b in it["code_blocks"]]
    starts = [e for e in rec.events if e[0] == "tool_start"]
    assert [e[2]["code"] for e in starts] == [b["code"] for b in cells]
    assert sum(e[0] == "tool_end" for e in rec.events) == len(cells)
