"""A crash between turns: a real process is killed (SIGKILL) in the middle of turn 2, and a
new process restores the conversation from what turn 1 saved and runs turn 2 again.

The scripted model runs behind a real HTTP server on 127.0.0.1 in this process, so the
server counts every call both processes make: turn 1's sub-calls must reach it once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rlm_engine.scripted import ScriptedModel, ScriptedServer
from rlm_engine.scripted.faults import Fault
from rlm_engine.scripted.policy import query_text

DOC = "\n".join(f"record {i}: value={i * 7}" for i in range(40)) + "\n"
CHUNKS = -(-len(DOC) // 300)

TURN_1 = (
    "```repl\nchunks = [context[i:i + 300] for i in range(0, len(context), 300)]\n"
    "notes = llm_query_batched([f'Summarize: {c}' for c in chunks])\n"
    "count_text = str(len(notes))\n```"
)
TURN_2 = "```repl\nagain = llm_query(f'One more question about {len(notes)} notes')\n```"
SECOND = "Ask once more about the notes."

# The process under test: turn 1, save, turn 2 (killed there); or restore and turn 2.
CHILD = r"""
import json, os, sys
from rlm_engine import RLM
from rlm_engine.conversation import Conversation

base_url, doc_path, saved, mode, environment, second = sys.argv[1:7]
doc = open(doc_path, encoding="utf-8").read()
rlm = RLM(backend="openai", model="scripted-root", sub_model="scripted-sub",
          base_url=base_url, api_key="sk-test", environment=environment)
if mode == "first":
    with rlm.conversation(doc) as conv:
        print("turn 1:", conv.send("How many notes are there?").response, flush=True)
        tmp = saved + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(conv.to_dict(), fh)
        os.replace(tmp, saved)
        print("saved", flush=True)
        conv.send(second)  # the server holds its sub-call: the process dies here
else:
    with open(saved, encoding="utf-8") as fh:
        data = json.load(fh)
    conv = Conversation.restore(rlm.config, data, {"context": doc})
    try:
        res = conv.send(second)
        print(json.dumps({"status": res.status, "response": res.response,
                          "turns": len(conv.turns), "sub_calls": res.usage.sub.calls}))
    finally:
        conv.close()
"""


def script(model: ScriptedModel) -> None:
    def when(text: str):
        return lambda r: r.is_rlm_root and text in query_text(r.first_user)  # not the digest

    # Replies by the turn's own progress (not a shared sequence): both processes run turn 2.
    model.add_rule(when("How many notes"), lambda r: "FINAL_VAR(count_text)" if r.turn else TURN_1)
    model.add_rule(when(SECOND), lambda r: "FINAL_VAR(again)" if r.turn else TURN_2)


def child(server: ScriptedServer, doc: Path, saved: Path, mode: str, environment: str, **kw):
    drop = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "RLM_API_URL", "OPENAI_BASE_URL")
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            server.base_url,
            str(doc),
            str(saved),
            mode,
            environment,
            SECOND,
        ],  # fmt: skip
        env={k: v for k, v in os.environ.items() if k not in drop},
        text=True,
        start_new_session=True,  # its own group, so the test can clear what it leaves
        **kw,
    )


def summaries(server: ScriptedServer) -> int:
    """Turn 1's sub-calls that the server answered (each one is paid)."""
    return sum(1 for r in server.stats.completions("scripted-sub") if "Summarize:" in r.last_user)


@pytest.mark.parametrize("environment", ["local", "auto"])
def test_a_process_killed_in_turn_two_resumes_without_paying_turn_one_again(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer, tmp_path: Path, environment
) -> None:
    script(scripted_model)
    held = threading.Event()

    def hold_turn_two(req) -> bool:
        if "One more question" in req.last_user:
            held.set()
            return True
        return False

    # Only the first process's turn-2 sub-call is held (times=1); the new process's passes.
    scripted_server.inject(Fault(hang=True, times=1, match=hold_turn_two))
    doc, saved = tmp_path / "records.txt", tmp_path / "conversation.json"
    doc.write_text(DOC, encoding="utf-8")

    first = child(scripted_server, doc, saved, "first", environment, stdout=subprocess.PIPE)
    try:
        assert held.wait(120), "turn 2 never reached its sub-call"
        first.send_signal(signal.SIGKILL)  # kill -9: no cleanup, no goodbye
        first.wait(30)
    finally:
        with contextlib.suppress(ProcessLookupError):  # what the dead process left running
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == -signal.SIGKILL
    assert first.stdout is not None
    assert first.stdout.read().splitlines() == [f"turn 1: {CHUNKS}", "saved"]
    assert summaries(scripted_server) == CHUNKS
    roots = len(scripted_server.stats.completions("scripted-root"))

    second = child(
        scripted_server, doc, saved, "again", environment,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    # `notes` was rebuilt by replaying turn 1's cells with its recorded answers ...
    assert result["status"] == "final"
    assert result["response"] == f"Scripted answer: One more question about {CHUNKS} notes"
    assert result["turns"] == 2 and result["sub_calls"] == 1
    # ... so the server answered turn 1's sub-calls once, in the killed process only,
    assert summaries(scripted_server) == CHUNKS
    # and the new process paid only turn 2: two root calls and its one sub-call.
    assert len(scripted_server.stats.completions("scripted-root")) == roots + 2
    subs = [r.last_user for r in scripted_server.stats.completions("scripted-sub")]
    assert subs.count(f"One more question about {CHUNKS} notes") == 1
