"""The ``rlm`` command as a user runs it: a subprocess, against the scripted HTTP server or the
in-process scripted backend, asserting on stdout, stderr and exit codes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.synthetic import HOSTILE, write_synthetic_trace

from rlm_engine.cli import CLIError, bench_scripts, find_benchmarks
from rlm_engine.progress import ProgressState

NEEDLE_QUESTION = "What is the secret code?"
REPO = Path(__file__).resolve().parent.parent


def haystack(code: str = "4412", lines: int = 4000) -> str:
    filler = [f"Line {i}: nothing of interest happens here." for i in range(lines)]
    filler.insert(lines // 2, f"The secret code is {code}.")
    return "\n".join(filler) + "\n"


def run_cli(
    *args: str, input: str | None = None, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m rlm_engine.cli ARGS`` with no provider keys, so the default is predictable."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "RLM_API_URL", "OPENAI_BASE_URL")
    }
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "rlm_engine.cli", *args],
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean,
        timeout=120,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("rlm: error:")]


@pytest.fixture
def hay_file(tmp_path: Path) -> Path:
    p = tmp_path / "hay.txt"
    p.write_text(haystack())
    return p


# ---------------------------------------------------------------------------- rlm run


def test_run_against_scripted_server_prints_answer(scripted_server, hay_file: Path) -> None:
    r = run_cli(
        "run",
        "--context",
        str(hay_file),
        "--query",
        NEEDLE_QUESTION,
        "--backend",
        "openai",
        "--base-url",
        scripted_server.base_url,
        "--model",
        "scripted-root",
        "--sub-model",
        "scripted-sub",
        "--api-key-env",
        "RLM_TEST_KEY",
        env={"RLM_TEST_KEY": "sk-test-key-for-cli"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "4412\n"
    assert "backend: openai (--backend)" in r.stderr
    assert "models: scripted-root, scripted-sub" in r.stderr
    # The answer really came over HTTP, from both the root and the sub model.
    by_model = scripted_server.stats.by_model
    assert by_model.get("scripted-root", 0) >= 2
    assert by_model.get("scripted-sub", 0) >= 1


def test_base_url_alone_selects_openai(scripted_server, hay_file: Path) -> None:
    r = run_cli(
        "run", "-c", str(hay_file), "-q", NEEDLE_QUESTION,
        "--base-url", scripted_server.base_url, "--model", "scripted-root",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "4412"
    assert "backend: openai (--base-url given)" in r.stderr


def test_default_backend_without_keys_is_scripted_and_said(hay_file: Path) -> None:
    r = run_cli("run", "-c", str(hay_file), "-q", NEEDLE_QUESTION)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "4412"
    assert "backend: scripted (no OPENAI_API_KEY" in r.stderr


def test_json_output_and_trace(hay_file: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    r = run_cli(
        "run", "-c", str(hay_file), "-q", NEEDLE_QUESTION, "--backend", "scripted",
        "--json", "--log-dir", str(logs),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "final"
    assert out["response"] == "4412"
    assert out["backend"] == "scripted"
    assert out["iterations"] >= 1
    usage = out["usage"]
    assert usage["total"]["calls"] == usage["root"]["calls"] + usage["sub"]["calls"]
    assert usage["root"]["calls"] == out["iterations"]
    assert usage["total"]["total_tokens"] > 0
    trace = Path(out["trace"])
    assert trace.parent == logs and trace.exists()
    kinds = [json.loads(line)["type"] for line in trace.read_text().splitlines()]
    assert kinds[0] == "metadata" and kinds[-1] == "result"
    assert f"rlm view {trace}" in r.stderr


def test_stdin_context(scripted_server) -> None:
    r = run_cli(
        "run", "--context", "-", "--query", NEEDLE_QUESTION, "--quiet",
        "--base-url", scripted_server.base_url, "--model", "scripted-root",
        input=haystack("9031"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "9031\n"
    assert r.stderr == ""  # --quiet: nothing but the answer


def test_directory_context_is_a_list_of_text_documents(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "nested").mkdir(parents=True)
    (docs / "a.txt").write_text(haystack(lines=300).replace("The secret code is 4412.", ""))
    (docs / "nested" / "b.md").write_text("# Notes\nThe secret code is 7731.\n")
    (docs / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    (docs / ".hidden.txt").write_text("The secret code is 1111.\n")
    r = run_cli("run", "-c", str(docs), "-q", NEEDLE_QUESTION, "--backend", "scripted", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["response"] == "7731"
    assert "context: 2 documents" in r.stderr
    assert "skipped 1 binary file" in r.stderr


def test_missing_context_file_is_one_error_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    r = run_cli("run", "-c", str(missing), "-q", "anything")
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.strip() == f"rlm: error: context not found: {missing}"


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    r = run_cli("run", "-c", str(tmp_path / "nope.txt"), "-q", "x", "--debug")
    assert r.returncode == 1
    assert "Traceback (most recent call last)" in r.stderr
    assert r.stderr.rstrip().endswith(f"rlm: error: context not found: {tmp_path / 'nope.txt'}")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_url_fails_fast_with_one_clear_line(hay_file: Path) -> None:
    port = _closed_port()
    started = time.monotonic()
    r = run_cli(
        "run", "-c", str(hay_file), "-q", NEEDLE_QUESTION, "--quiet",
        "--backend", "openai", "--base-url", f"http://127.0.0.1:{port}/v1",
        "--model", "gpt-test", "--max-retries", "0", "--request-timeout", "5",
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert r.returncode == 1
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("rlm: error: Root LM call failed")
    assert "Connection" in lines[0]
    assert "Traceback" not in r.stderr
    print(f"bad URL: exit 1 after {elapsed:.2f}s")  # reported, not asserted


def test_no_answer_within_limits_exits_2(hay_file: Path) -> None:
    r = run_cli(
        "run", "-c", str(hay_file), "-q", NEEDLE_QUESTION, "--backend", "scripted",
        "--max-llm-calls", "1", "--json",
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "budget"
    assert out["response"] is None
    assert "no final answer within the limits (budget)" in r.stderr
    assert error_lines(r.stderr) == []


def test_max_iterations_prints_best_partial_answer_and_exits_2(hay_file: Path) -> None:
    r = run_cli(
        "run", "-c", str(hay_file), "-q", NEEDLE_QUESTION, "--backend", "scripted",
        "--max-iterations", "1",
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "no final answer within the limits (max_iterations)" in r.stderr
    assert "best partial answer" in r.stderr
    assert r.stdout.strip() == "4412"  # the engine's forced final answer, not a FINAL


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["run", "-q", "x"],  # --context missing
        ["run", "-c", "f", "--max-iterations", "0"],
        ["run", "-c", "f", "--backend", "nope"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_64(argv: list[str]) -> None:
    r = run_cli(*argv)
    assert r.returncode == 64, r.stderr
    assert r.stdout == ""
    assert "usage: rlm" in r.stderr
    assert "Traceback" not in r.stderr


def test_api_key_env_must_exist(hay_file: Path) -> None:
    r = run_cli(
        "run", "-c", str(hay_file), "-q", "x", "--backend", "openai",
        "--api-key-env", "RLM_TEST_SURELY_UNSET_VAR",
    )  # fmt: skip
    assert r.returncode == 1
    assert error_lines(r.stderr) == [
        "rlm: error: --api-key-env RLM_TEST_SURELY_UNSET_VAR: that environment variable is not set"
    ]


# ---------------------------------------------------------------------------- rlm view


def _embedded_payload(html: str) -> dict:
    start = html.index('<script type="application/json" id="rlm-data">') + len(
        '<script type="application/json" id="rlm-data">'
    )
    return json.loads(html[start : html.index("</script>", start)])


def test_view_renders_a_real_trace(hay_file: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    r = run_cli(
        "run", "-c", str(hay_file), "-q", NEEDLE_QUESTION, "--log-dir", str(logs), "--quiet"
    )
    assert r.returncode == 0, r.stderr
    out = tmp_path / "view" / "trace.html"
    v = run_cli("view", str(logs), "-o", str(out))  # a directory: its newest trace
    assert v.returncode == 0, v.stderr
    assert v.stdout.strip() == str(out)
    html = out.read_text()
    assert html.startswith("<!doctype html>")
    # Self-contained: no external scripts, styles, fonts or fetches.
    for needle in ("<script src", "<link", "@import", "fetch(", "XMLHttpRequest"):
        assert needle not in html
    payload = _embedded_payload(html)
    assert payload["result"]["status"] == "final"
    assert payload["result"]["response"] == "4412"
    assert payload["meta"]["query"] == NEEDLE_QUESTION
    assert len(payload["iterations"]) == len(payload["summary"]) >= 1
    assert payload["warnings"] == []


def test_view_default_output_next_to_trace_and_hostile_content_is_escaped(tmp_path: Path) -> None:
    trace = write_synthetic_trace(tmp_path / "t.jsonl", iterations=3, subcalls_per_iteration=2)
    v = run_cli("view", str(trace))
    assert v.returncode == 0, v.stderr
    out = tmp_path / "t.html"
    assert v.stdout.strip() == str(out)
    html = out.read_text()
    assert HOSTILE not in html
    assert html.count("</script>") == 2  # only the page's own two script elements
    assert HOSTILE in _embedded_payload(html)["meta"]["query"]  # the data survives intact


def test_view_incomplete_trace_renders_with_warnings(tmp_path: Path) -> None:
    trace = write_synthetic_trace(tmp_path / "crash.jsonl", iterations=4, complete=False)
    with trace.open("a") as fh:
        fh.write('{"type": "iteration", "index": 4, "respo')  # the write the crash cut off
    v = run_cli("view", str(trace), "-o", str(tmp_path / "crash.html"))
    assert v.returncode == 0, v.stderr
    payload = _embedded_payload((tmp_path / "crash.html").read_text())
    assert payload["result"] is None
    assert len(payload["iterations"]) == 4
    assert payload["usage_source"] == "computed"
    assert payload["usage"]["root"]["calls"] == 4
    assert any("not valid JSON" in w for w in payload["warnings"])
    assert any("no result line" in w for w in payload["warnings"])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "trace file not found"),
        ("just some text\n", "contains no trajectory records"),
    ],
)
def test_view_bad_input_is_one_error_line(tmp_path: Path, content: str | None, expected: str):
    p = tmp_path / "x.jsonl"
    if content is not None:
        p.write_text(content)
    v = run_cli("view", str(p))
    assert v.returncode == 1
    assert len(v.stderr.strip().splitlines()) == 1
    assert v.stderr.startswith("rlm: error: ") and expected in v.stderr


# ---------------------------------------------------------------------------- rlm bench


def _bench_checkout(root: Path, fail: bool = False) -> Path:
    bench = root / "benchmarks"
    bench.mkdir(parents=True)
    body = (
        "import sys\n"
        "def main():\n"
        "    print('| bench | quick |')\n"
        "    print(f'| {NAME} | {\"--quick\" in sys.argv} |')\n"
        "    sys.exit(EXIT)\n"
        "if __name__ == '__main__':\n"
        "    main()\n"
    )
    for name in ("bench_zeta", "bench_environments", "bench_engine"):
        code = "1" if fail and name == "bench_environments" else "0"
        (bench / f"{name}.py").write_text(f"NAME = {name!r}\nEXIT = {code}\n" + body)
    return bench


def test_bench_runs_scripts_in_order_and_passes_quick(tmp_path: Path) -> None:
    _bench_checkout(tmp_path)
    sub = tmp_path / "somewhere" / "deeper"
    sub.mkdir(parents=True)
    r = run_cli("bench", "--quick", cwd=sub)  # found from a subdirectory of the checkout
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| bench_")]
    assert rows == [
        "| bench_engine | True |",
        "| bench_environments | True |",
        "| bench_zeta | True |",
    ]
    only = run_cli("bench", "engine", cwd=tmp_path)
    assert only.returncode == 0, only.stderr
    assert "| bench_engine | False |" in only.stdout and "bench_zeta" not in only.stdout


def test_bench_failure_and_unknown_name(tmp_path: Path) -> None:
    _bench_checkout(tmp_path, fail=True)
    r = run_cli("bench", cwd=tmp_path)
    assert r.returncode == 1
    assert "| bench_zeta | False |" in r.stdout  # a failure does not stop the others
    assert error_lines(r.stderr) == ["rlm: error: benchmark failed: bench_environments.py (exit 1)"]
    u = run_cli("bench", "nope", cwd=tmp_path)
    assert u.returncode == 64
    assert "unknown benchmark bench_nope.py" in u.stderr


def test_bench_without_benchmarks_directory_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(CLIError, match="no benchmarks/ directory"):
        find_benchmarks(tmp_path, checkout=None)
    bench = _bench_checkout(tmp_path / "repo")
    assert find_benchmarks(tmp_path / "repo", checkout=None) == bench
    assert [p.name for p in bench_scripts(bench)][:2] == [
        "bench_engine.py",
        "bench_environments.py",
    ]


# ---------------------------------------------------------------------------- progress


def test_progress_state_counts_subcalls_in_flight_and_done() -> None:
    st = ProgressState()
    usage = {"calls": 1, "total_tokens": 1200, "cost": 0.002}
    st.apply({"event": "iteration_start", "depth": 0, "iteration": 1, "usage": {}})
    st.apply({"event": "root_response", "depth": 0, "iteration": 1, "usage": usage})
    for _ in range(3):
        st.apply({"event": "subcall_start", "depth": 0, "function": "llm_query_batched"})
    batched = {"event": "subcall_end", "depth": 0, "function": "llm_query_batched"}
    st.apply({**batched, "error": None})
    assert (st.in_flight, st.done) == (2, 1)
    # rlm_query ends without a start event: it must not settle a batched call in flight.
    st.apply({"event": "subcall_end", "depth": 0, "function": "rlm_query", "error": None})
    assert (st.in_flight, st.done) == (2, 2)
    st.apply({**batched, "error": "Error: boom"})
    st.apply({**batched, "error": None})
    st.apply({**batched, "error": None, "replayed": True})  # never started
    assert (st.in_flight, st.done, st.errors) == (0, 5, 1)
    line = st.status_line()
    assert "iteration 1" in line and "0 in flight, 5 done (1 failed)" in line
    assert "1,200 tokens" in line and "$0.0020" in line
    st.apply({"event": "iteration_start", "depth": 1, "iteration": 1})
    assert st.iteration == 1 and "depth 1" in st.activity  # child iterations do not advance


def test_plain_progress_lines_when_not_a_tty(hay_file: Path) -> None:
    r = run_cli("run", "-c", str(hay_file), "-q", NEEDLE_QUESTION, "--backend", "scripted")
    assert r.returncode == 0
    lines = [line for line in r.stderr.splitlines() if line.startswith("rlm: iteration")]
    assert lines[0] == "rlm: iteration 1: waiting for the root LM"
    assert any("sub-calls" in line and "tokens" in line for line in lines[1:])
    assert lines[-1].endswith("· FINAL")
    assert "\x1b[" not in r.stderr  # no terminal control codes in logs


def test_subprocess_environment_and_env_opt(hay_file: Path) -> None:
    r = run_cli(
        "run", "-c", str(hay_file), "-q", NEEDLE_QUESTION, "--backend", "scripted",
        "-e", "subprocess", "--env-opt", "timeout=60", "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "4412\n"
    bad = run_cli("run", "-c", str(hay_file), "--env-opt", "novalue")
    assert bad.returncode == 64
    assert error_lines(bad.stderr) == ["rlm: error: --env-opt expects KEY=VALUE, got 'novalue'"]


def test_view_open_hands_the_file_to_the_browser(tmp_path: Path) -> None:
    opened = tmp_path / "opened.txt"
    fake = tmp_path / "fake-browser"
    fake.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    fake.chmod(0o755)
    trace = write_synthetic_trace(tmp_path / "t.jsonl", iterations=2)
    r = run_cli("view", str(trace), "--open", env={"BROWSER": f"{fake} %s"})
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 30  # webbrowser may start the command in the background
    while not opened.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert opened.read_text().strip() == (tmp_path / "t.html").resolve().as_uri()


def test_live_progress_on_a_terminal(hay_file: Path) -> None:
    """On a TTY the progress is a live status line (rich), not the plain per-iteration lines."""
    import pty

    main_fd, child_fd = pty.openpty()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "RLM_API_URL")
    }
    env.update({"TERM": "xterm-256color", "COLUMNS": "160"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlm_engine.cli", "run", "-c", str(hay_file), "-q", NEEDLE_QUESTION,
         "--backend", "scripted"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=child_fd, env=env,
    )  # fmt: skip
    os.close(child_fd)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(main_fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    stdout, _ = proc.communicate(timeout=120)
    os.close(main_fd)
    tty = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, tty
    assert stdout.decode() == "4412\n"  # the answer alone on stdout, outside the live display
    assert "in flight" in tty and "done" in tty and "tokens" in tty
    assert "\x1b[" in tty  # drawn with terminal control codes
    assert "rlm: iteration 1: waiting" not in tty  # not the plain-line mode
    assert "rlm: final ·" in tty
