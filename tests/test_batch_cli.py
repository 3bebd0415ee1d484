"""``rlm batch``: the command end to end against the scripted HTTP server (a subprocess,
as a user runs it): results, resume, exit codes, usage errors before any LM call."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_batch import completions, ids_in, rows
from tests.test_cli import run_cli


def write_input(path: Path, batch: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in batch))
    return path


def flags(server) -> list[str]:
    return ["--base-url", server.base_url, "--model", "scripted-root", "-e", "local",
            "--api-key-env", "BATCH_TEST_KEY"]  # fmt: skip


ENV = {"BATCH_TEST_KEY": "sk-test"}


def test_rlm_batch_writes_every_row_and_resumes(scripted_server, tmp_path):
    src = write_input(tmp_path / "in.jsonl", rows(3))
    out = tmp_path / "out.jsonl"
    r = run_cli("batch", str(src), "--out", str(out), "--json", *flags(scripted_server), env=ENV)
    assert r.returncode == 0, r.stderr
    assert sorted(ids_in(out)) == ["r0", "r1", "r2"]
    summary = json.loads(r.stdout)
    assert summary["by_status"] == {"final": 3} and summary["correct"] == 3
    assert "3 run now" in r.stderr and "backend: openai" in r.stderr  # the summary table
    paid = completions(scripted_server)
    write_input(src, rows(4))
    r = run_cli("batch", str(src), "--out", str(out), "--json", *flags(scripted_server), env=ENV)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["skipped"] == 3
    assert sorted(ids_in(out)) == ["r0", "r1", "r2", "r3"]
    assert completions(scripted_server) == paid * 4 // 3  # only the new row was paid


def test_a_failed_row_exits_1_after_writing_every_row(scripted_server, tmp_path):
    batch = [*rows(2), {"id": "gone", "context_path": "missing.txt", "query": "q"}]
    src = write_input(tmp_path / "in.jsonl", batch)
    out = tmp_path / "out.jsonl"
    r = run_cli("batch", str(src), "--out", str(out), *flags(scripted_server), env=ENV)
    assert r.returncode == 1, r.stderr
    assert sorted(ids_in(out)) == ["gone", "r0", "r1"]
    assert "failed" in r.stderr and "cannot read context_path" in r.stderr


def test_usage_errors_exit_64_before_any_lm_call(scripted_server, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "context": "x", "query": "q"}\n{"context": "y"}\n')
    out = tmp_path / "out.jsonl"
    r = run_cli("batch", str(src), "--out", str(out), *flags(scripted_server), env=ENV)
    assert r.returncode == 64 and 'in.jsonl:2: every row needs an "id"' in r.stderr
    r = run_cli("batch", str(src), "--out", str(out), "--address", "auto", env=ENV)
    assert r.returncode == 64 and "--executor ray" in r.stderr
    r = run_cli("batch", str(src), "--out", str(out), "--max-iterations", "0", env=ENV)
    assert r.returncode == 64 and "max_iterations" in r.stderr
    r = run_cli("batch", str(src), "--out", str(out), "--model-rate-limit", "m=fast", env=ENV)
    assert r.returncode == 64 and "RPM[/TPM]" in r.stderr
    assert completions(scripted_server) == 0 and not out.exists()
