"""``rlm run --mode``: the generated flags reach the router, and the summary says the path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlm_engine.scripted import ScriptedModel, ScriptedServer
from tests.support.mode_support import BACKENDS, QUESTION, completions, haystack, teach_direct
from tests.test_cli import run_cli


def _run(server: ScriptedServer, hay: Path, backend: str, *flags: str) -> tuple[int, str, str]:
    url = server.base_url if backend == "openai" else server.url
    r = run_cli(
        "run", "--context", str(hay), "--query", QUESTION, "--backend", backend,
        "--base-url", url, "--model", "scripted-root", "-e", "local", *flags,
        env={"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-test"},
    )  # fmt: skip
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_mode_auto_answers_directly_and_says_so(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel, tmp_path: Path, backend: str
) -> None:
    seen = teach_direct(scripted_model)
    hay = tmp_path / "hay.txt"
    hay.write_text(haystack("3141"))
    code, out, err = _run(scripted_server, hay, backend, "--mode", "auto")
    assert code == 0, err
    assert out == "3141\n" and "path: direct (mode='auto'" in err
    assert len(seen) == 1 and len(completions(scripted_server)) == 1
    scripted_server.stats.reset()
    code, out, err = _run(
        scripted_server, hay, backend, "--mode", "auto", "--direct-threshold-tokens", "50", "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["path"] == "rlm" and "exceed 50" in result["path_reason"]
    assert result["response"] == "3141" and len(seen) == 1  # no second direct call


def test_run_mode_must_be_known(tmp_path: Path) -> None:
    hay = tmp_path / "hay.txt"
    hay.write_text("x")
    r = run_cli("run", "--context", str(hay), "--query", "q", "--mode", "fast")
    assert r.returncode == 64  # a usage error, before anything runs
    assert "invalid choice: 'fast' (choose from 'rlm', 'direct', 'auto')" in r.stderr
    assert "--mode {rlm,direct,auto}" in run_cli("run", "--help").stdout
