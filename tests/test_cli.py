"""The ``rlm`` command as a user runs it: a subprocess, against the scripted HTTP server or the
in-process scripted backend, asserting on stdout, stderr and exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.synthetic import HOSTILE, write_synthetic_trace

from rlm_engine.cli import CLIError, bench_scripts, find_benchmarks
from rlm_engine.progress import ProgressState
from rlm_engine.scripted.faults import Fault

NEEDLE_QUESTION = "What is the secret code?"
REPO = Path(__file__).resolve().parent.parent


def haystack(code: str = "4412", lines: int = 4000) -> str:
    filler = [f"Line {i}: nothing of interest happens here." for i in range(lines)]
    filler.insert(lines // 2, f"The secret code is {code}.")
    return "\n".join(filler) + "\n"


def clean_env(env: dict | None = None) -> dict[str, str]:
    """The environment without provider keys, so the default backend is predictable."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "RLM_API_URL", "OPENAI_BASE_URL")
    }
    clean.update(env or {})
    return clean


def run_cli(
    *args: str, input: str | None = None, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m rlm_engine.cli ARGS`` with no provider keys, so the default is predictable."""
    return subprocess.run(
        [sys.executable, "-m", "rlm_engine.cli", *args],
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(env),
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


@pytest.mark.parametrize("content", ["", "  \n\t\n"])
def test_an_empty_context_is_a_usage_error_before_any_lm_call(
    scripted_server, tmp_path: Path, content: str
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text(content)
    server = ["--base-url", scripted_server.base_url, "--model", "scripted-root"]
    for argv, stdin in ((["-c", str(empty)], None), (["-c", "-"], content)):
        r = run_cli("run", *argv, "-q", "What is the secret code?", *server, input=stdin)
        assert r.returncode == 64, r.stderr
        assert r.stdout == ""
        assert error_lines(r.stderr)[0].startswith("rlm: error: the context is empty")
    assert scripted_server.stats.log == []  # nothing was paid for


def test_stdin_and_files_decode_the_same_way(scripted_server, tmp_path: Path) -> None:
    """Bytes that are not UTF-8 become U+FFFD, on stdin as in a file. Python decodes
    ``sys.stdin`` with the locale's error handler: strict under a UTF-8 locale (the run
    failed with UnicodeDecodeError), surrogateescape under C; the command reads bytes."""
    data = b"caf\xe9 \xff\xfe latin-1 bytes\n" + haystack("5150").encode()
    (tmp_path / "latin.txt").write_bytes(data)
    args = ["run", "-q", NEEDLE_QUESTION, "--quiet", "--json", "--base-url",
            scripted_server.base_url, "--model", "scripted-root"]  # fmt: skip
    from_file = run_cli(*args, "-c", str(tmp_path / "latin.txt"), "--log-dir", str(tmp_path / "f"))
    from_stdin = subprocess.run(
        [sys.executable, "-m", "rlm_engine.cli", *args, "-c", "-", "--log-dir", str(tmp_path / "s")],
        input=data, capture_output=True, timeout=120,
        env=clean_env({"LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8:strict"}),
    )  # fmt: skip
    for r in (from_file, from_stdin):
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["response"] == "5150"
        meta = json.loads(Path(out["trace"]).read_text(encoding="utf-8").splitlines()[0])
        assert meta["context"]["preview"].startswith("caf\ufffd \ufffd\ufffd latin-1 bytes")


def test_a_final_answer_whose_every_sub_call_failed_is_said_even_when_quiet(
    scripted_server, hay_file: Path
) -> None:
    scripted_server.inject(Fault(status=500, times=None, match="scripted-sub"))
    r = run_cli(
        "run", "-c", str(hay_file), "-q", NEEDLE_QUESTION, "--quiet",
        "--base-url", scripted_server.base_url, "--model", "scripted-root",
        "--sub-model", "scripted-sub", "--sub-backend-opt", "max_retries=0",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr  # the run still ended with an answer ...
    (warning,) = r.stderr.splitlines()  # ... and the one line on stderr says what it rests on
    assert warning.startswith("rlm: warning: All ") and "sub-calls of this run failed" in warning


def test_help_says_the_budgets_exit_codes_and_how_to_lift_a_budget() -> None:
    text = " ".join(run_cli("run", "--help").stdout.split())
    assert "Budgets, on by default for every run: 1,000 LM calls, 20.00M tokens, $25.00" in text
    assert "remove it with none (--max-cost none)" in text
    assert "--timeout (300 s, retries included)" in text
    for code in ("0 final answer", "2 no answer", "1 error", "64 usage error", "130 interrupted"):
        assert code in text
    assert "--max-llm-calls N|none" in text and "default: 1,000; none removes it" in text


def test_the_summary_shows_usage_against_the_budgets_and_none_lifts_them(hay_file: Path):
    base = ["run", "-c", str(hay_file), "-q", NEEDLE_QUESTION, "--backend", "scripted"]
    r = run_cli(*base)
    assert r.returncode == 0, r.stderr
    summary = next(line for line in r.stderr.splitlines() if line.startswith("rlm: final"))
    assert " of 1,000 LM calls " in summary and " of 20.00M tokens" in summary
    assert "(budget $25.00)" in summary  # the scripted model has no price: cost n/a
    lifted = run_cli(*base, "--max-llm-calls", "none", "--max-total-tokens", "none", "--json")
    assert lifted.returncode == 0, lifted.stderr
    summary = next(line for line in lifted.stderr.splitlines() if line.startswith("rlm: final"))
    assert " of " not in summary.split(" · ")[2]  # "N LM calls", no budget
    bad = run_cli(*base, "--max-llm-calls", "lots")
    assert bad.returncode == 64
    assert "argument --max-llm-calls: invalid int value: 'lots'" in bad.stderr


def test_a_large_context_gets_an_estimate_before_the_run(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text(haystack(lines=30_000))  # about 1.4 million characters
    size = len(big.read_text())
    r = run_cli(
        "run", "-c", str(big), "-q", NEEDLE_QUESTION, "--backend", "scripted",
        "--max-llm-calls", "5",
    )  # fmt: skip
    lines = r.stderr.splitlines()
    first_iteration = next(i for i, line in enumerate(lines) if line.startswith("rlm: iteration"))
    estimate = [line for line in lines[:first_iteration] if "large context" in line]
    assert estimate == [
        f"rlm: large context: {size:,} characters (about {size / 4 / 1000:.1f}k tokens); "
        f"reading it all once takes at least {-(-size // 100_000)} sub-calls (up to 100,000 "
        "characters each)"
    ]
    budgets = lines[lines.index(estimate[0]) + 1]
    assert budgets.startswith("rlm: budgets per run: 5 LM calls, 20.00M tokens, $25.00")
    assert "would pass --max-llm-calls" in budgets
    assert r.returncode == 2 and "no final answer within the limits (budget)" in r.stderr
    quiet = run_cli(
        "run", "-c", str(big), "-q", NEEDLE_QUESTION, "--backend", "scripted", "--quiet"
    )
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_a_small_context_gets_no_estimate(hay_file: Path) -> None:
    r = run_cli("run", "-c", str(hay_file), "-q", NEEDLE_QUESTION, "--backend", "scripted")
    assert r.returncode == 0 and "large context" not in r.stderr


def test_ctrl_c_exits_130_and_ends_the_trace_with_the_interrupted_iteration(
    scripted_server, hay_file: Path, tmp_path: Path
) -> None:
    """SIGINT while a sub-call hangs: the one sub-call that returned is kept in the trace."""
    sub_requests: list[object] = []
    second_sub_call = threading.Event()

    def hang_after_the_first_sub_call(req) -> bool:
        if req.model != "scripted-sub":
            return False
        sub_requests.append(req)
        if len(sub_requests) < 2:
            return False
        second_sub_call.set()
        return True

    scripted_server.inject(Fault(hang=True, times=None, match=hang_after_the_first_sub_call))
    logs = tmp_path / "logs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlm_engine.cli", "run", "-c", str(hay_file),
         "-q", NEEDLE_QUESTION, "--base-url", scripted_server.base_url,
         "--model", "scripted-root", "--sub-model", "scripted-sub", "--max-concurrency", "1",
         "--sub-backend-opt", "context_chars=20000", "--log-dir", str(logs)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=clean_env(),
    )  # fmt: skip
    try:
        assert second_sub_call.wait(60), "the run never reached its second sub-call"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert out == ""
    (trace,) = logs.glob("*.jsonl")
    assert f"rlm: interrupted (Ctrl-C); the partial trace is {trace}" in err
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [r["type"] for r in records] == ["metadata", "iteration", "result"]
    partial, result = records[1], records[2]
    assert result["status"] == "interrupted"
    assert result["error"] == "interrupted by the user (Ctrl-C) during iteration 1"
    # The finished sub-call, and the abandoned one (its stream closed by Ctrl-C): the server
    # worked on it, so it is counted too, with the client's estimate.
    assert result["usage"]["sub"]["calls"] == 2 and result["usage"]["root"]["calls"] == 1
    assert partial["interrupted"] is True and partial["index"] == 1
    (block,) = partial["code_blocks"]
    assert block["interrupted"] is True
    assert block["error"].endswith("; 9 unfinished sub-call(s) were abandoned")  # queued too
    (done,) = block["subcalls"]
    assert (done["model"], done["response"]) == ("scripted-sub", "NOT FOUND")
    # The viewer shows the run as interrupted, not as "crashed or still running".
    v = run_cli("view", str(trace), "-o", str(tmp_path / "t.html"))
    assert v.returncode == 0, v.stderr
    payload = _embedded_payload((tmp_path / "t.html").read_text())
    assert payload["result"]["status"] == "interrupted"
    assert payload["warnings"] == [
        "the run was interrupted (Ctrl-C) during iteration 1: that iteration is partial (its "
        "sub-call prompts and answers are cut to 200 characters); totals are what was counted "
        "up to the interruption"
    ]
    assert payload["summary"][0][payload["summary_fields"].index("interrupted")] is True


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
