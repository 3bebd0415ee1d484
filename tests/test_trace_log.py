"""The JSONL trace writer: text it cannot encode, and the ending of an interrupted run."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from rlm_engine import Iteration, RLMLogger
from rlm_engine.logger import IterationRecorder
from rlm_engine.state import RLMState
from rlm_engine.usage import Usage
from rlm_engine.viewer import load_trace


def _state(run_id: str = "run1") -> RLMState:
    return RLMState(query="q", context_info={}, system="s", first_user="u", run_id=run_id)


def test_lone_surrogates_are_written_and_read_back_unchanged(tmp_path: Path) -> None:
    """Model output and REPL values may hold lone surrogates; the trace must not fail."""
    logger = RLMLogger(tmp_path)
    text = "before \ud800 after \udcff end"
    logger.log_iteration(Iteration(index=1, response=text), _state())
    (trace,) = tmp_path.glob("*.jsonl")
    raw = trace.read_bytes()
    raw.decode("utf-8")  # the file stays valid UTF-8 ...
    assert json.loads(raw)["response"] == text  # ... and the JSON escapes read back as written


def _events(recorder: IterationRecorder, *events: dict) -> None:
    for e in events:
        recorder({"depth": 0, **e})


def test_the_recorder_keeps_the_iteration_in_progress() -> None:
    rec = IterationRecorder()
    assert rec.partial() is None
    _events(
        rec,
        {"event": "iteration_start", "iteration": 1},
        {"event": "root_response", "text": "one", "input_tokens": 5, "output_tokens": 2},
        {"event": "code_start", "code": "x = 1"},
        {"event": "code_end", "output": "ok"},
        {"event": "iteration_end", "iteration": 1},  # finished: logged by the session itself
        {"event": "iteration_start", "iteration": 2},
        {"event": "root_response", "text": "two", "input_tokens": 7, "output_tokens": 3},
        {"event": "code_start", "code": "llm_query_batched(chunks)"},
        {"event": "subcall_start", "function": "llm_query_batched"},
        {"event": "subcall_start", "function": "llm_query_batched"},
        {"event": "subcall_end", "function": "llm_query_batched", "prompt": "p", "response": "r",
         "model": "m", "input_tokens": 3, "output_tokens": 1, "latency": 0.1, "error": None},
    )  # fmt: skip
    rec({"event": "subcall_end", "depth": 1, "function": "llm_query"})  # a child's: not ours
    partial = rec.partial()
    assert partial is not None
    assert (partial["index"], partial["response"], partial["interrupted"]) == (2, "two", True)
    (block,) = partial["code_blocks"]
    assert block["interrupted"] is True
    assert block["error"] == (
        "interrupted (Ctrl-C) while this block ran; 1 unfinished sub-call(s) were abandoned"
    )
    assert [(s["prompt"], s["response"], s["model"]) for s in block["subcalls"]] == [
        ("p", "r", "m")
    ]
    assert partial["interrupted_note"].startswith("interrupted while code block 1 ran")


def test_log_interrupted_ends_the_trace_the_viewer_reads(tmp_path: Path) -> None:
    logger = RLMLogger(tmp_path)
    state = _state()
    logger.log_iteration(Iteration(index=1, response="first"), state)
    state.iterations.append(Iteration(index=1, response="first"))
    rec = IterationRecorder()
    _events(rec, {"event": "iteration_start", "iteration": 2})
    session = SimpleNamespace(state=state, shared=SimpleNamespace(usage=Usage()))
    logger.log_interrupted(session, rec.partial())
    (trace,) = tmp_path.glob("*.jsonl")
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [r["type"] for r in records] == ["iteration", "iteration", "result"]
    assert records[1]["interrupted_note"] == "interrupted while waiting for the root LM's response"
    result = records[2]
    assert (result["status"], result["iterations"]) == ("interrupted", 1)
    assert result["error"] == "interrupted by the user (Ctrl-C) during iteration 2"
    loaded = load_trace(trace)
    assert loaded.complete
    assert loaded.warnings == [
        "no metadata line: run configuration unknown",
        "the run was interrupted (Ctrl-C) during iteration 2: that iteration is partial (its "
        "sub-call prompts and answers are cut to 200 characters); totals are what was counted "
        "up to the interruption",
    ]
