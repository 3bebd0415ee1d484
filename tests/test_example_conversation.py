"""examples/conversation.py runs offline (no provider key) and its three turns check out:
turn 2 answers from turn 1's variable without a sub-call, turn 3 is one root call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "conversation.py"


def test_the_conversation_example_runs_offline() -> None:
    drop = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "RLM_API_URL")
    r = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in drop},
        timeout=180,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "offline scripted model" in r.stdout
    assert "WRONG" not in r.stdout
    for check in ("turn 2 made no sub-call", "turn 3 was one root call"):
        assert f"ok    {check}" in r.stdout
    assert "2 root + 0 sub-calls" in r.stdout and "1 root + 0 sub-calls" in r.stdout
