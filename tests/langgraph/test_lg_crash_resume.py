"""A real ``kill -9`` mid-run, then a new process resumes the thread from SqliteSaver.

The scripted server runs in this (parent) process, so it counts every request both
child processes make: sub-calls answered before the crash must not be requested again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lg_support import ANSWER, QUESTION, make_haystack

from rlm_engine.scripted import Fault

WORKER = Path(__file__).with_name("lg_crash_worker.py")


def _worker(db: Path, url: str, thread: str, context: Path | None = None) -> list[str]:
    cmd = [sys.executable, str(WORKER), "--db", str(db), "--base-url", url, "--thread", thread]
    if context is not None:
        cmd += ["--context-file", str(context), "--query", QUESTION]
    return cmd


def _run(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _wait_until(cond, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "the child did not reach the crash point"
        time.sleep(0.05)


def test_kill_9_mid_run_then_resume_in_a_new_process(tmp_path, scripted_server):
    context = tmp_path / "haystack.txt"
    context.write_text(make_haystack())
    db = tmp_path / "checkpoints.sqlite"
    url = scripted_server.base_url

    # Reference: the same run, uninterrupted.
    ref = _run(_worker(db, url, "reference", context))
    assert ref["final_answer"] == ANSWER and ref["iteration"] == 2
    ref_sub = scripted_server.stats.by_model["scripted-sub"]
    assert ref["sub_calls_in_usage"] == ref_sub
    scripted_server.reset_stats()

    # Crash: the root LM's second turn hangs; iteration 1 (all chunk sub-calls) is done.
    hang = scripted_server.inject(
        Fault(hang=True, times=1, match=lambda r: r.is_rlm_root and r.turn == 1)
    )
    child = subprocess.Popen(
        _worker(db, url, "crash", context), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        _wait_until(lambda: hang.fired == 1 or child.poll() is not None)
        assert child.poll() is None, child.stderr.read().decode()[-3000:]
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
        child.stderr.close()
    paid_before_crash = scripted_server.stats.by_model["scripted-sub"]
    assert paid_before_crash == ref_sub - 1  # every chunk query, not yet the aggregate

    # Resume: a new process, same database and thread, no input (the context comes
    # from the checkpoint).
    resumed = _run(_worker(db, url, "crash"))
    assert resumed["final_answer"] == ref["final_answer"]
    assert resumed["status"] == "final" and resumed["iteration"] == 2
    assert resumed["rebuilds"] == 1
    assert resumed["replayed_subcalls"] == paid_before_crash
    # the server saw each sub-call once across both processes, like the reference run
    assert scripted_server.stats.by_model["scripted-sub"] == ref_sub
    # and the resumed usage ledger still counts what was paid before the crash
    assert resumed["sub_calls_in_usage"] == ref_sub
