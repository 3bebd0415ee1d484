"""Batch runs on the local executor: rows, results file (resumable, exactly-once), failed
rows, the shared rate limit (measured at the scripted HTTP server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlm_engine.batch import BatchRow, RowError, load_rows, read_results, run_batch
from rlm_engine.batch.output import ResultWriter
from rlm_engine.batch.results import RowResult
from rlm_engine.scripted.server import ScriptedServer
from tests.test_engine import haystack

QUERY = "What is the vault access code?"


def rows(n: int, start: int = 0) -> list[dict]:
    return [
        {
            "id": f"r{i}",
            "context": haystack(6_000, secret=str(4000 + i), seed=i),
            "query": QUERY,
            "expected": str(4000 + i),
        }
        for i in range(start, start + n)
    ]


def engine(server: ScriptedServer) -> dict:
    return {
        "backend": "openai",
        "base_url": server.base_url,
        "api_key": "sk-test",
        "model": "scripted-root",
        "environment": "local",
    }


def completions(server: ScriptedServer) -> int:
    return len([r for r in server.stats.completions() if r.status == 200])


def ids_in(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]


def test_local_batch_answers_every_row_and_usage_matches_server(scripted_server, tmp_path):
    out = tmp_path / "results.jsonl"
    summary = run_batch(rows(8), out=out, concurrency=4, **engine(scripted_server))
    assert summary.by_status == {"final": 8}
    assert summary.correct == summary.judged == 8
    assert sorted(ids_in(out)) == sorted(f"r{i}" for i in range(8))
    written = {r.id: r for r in read_results(out)}
    assert written["r3"].answer == "4003" and written["r3"].correct is True
    # usage of every row adds up to what the server answered
    assert summary.calls == completions(scripted_server)
    inp, outp = scripted_server.stats.tokens()
    assert summary.total_tokens == inp + outp


def test_failed_row_records_its_error_and_the_batch_goes_on(scripted_server, tmp_path):
    batch = rows(3) + [{"id": "missing", "context_path": "nope.txt", "query": QUERY}]
    (tmp_path / "doc.txt").write_text(haystack(5_000, secret="9182"))
    batch.append({"id": "from-file", "context_path": str(tmp_path / "doc.txt"), "query": QUERY})
    out = tmp_path / "out.jsonl"
    summary = run_batch(batch, out=out, concurrency=2, **engine(scripted_server))
    written = {r.id: r for r in read_results(out)}
    assert len(written) == 5 and summary.failed == 1
    assert written["missing"].status == "error"
    assert "cannot read context_path" in (written["missing"].error or "")
    assert written["from-file"].answer == "9182"


def test_rerun_resumes_skipping_written_ids(scripted_server, tmp_path):
    out = tmp_path / "out.jsonl"
    run_batch(rows(4), out=out, **engine(scripted_server))
    first = completions(scripted_server)
    # a crash mid-write left a torn last line: it is dropped, the row runs again
    with out.open("ab") as fh:
        fh.write(b'{"id": "r4", "status": "fi')
    summary = run_batch(rows(6), out=out, **engine(scripted_server))
    assert summary.skipped == 4 and sorted(r.id for r in summary.results) == ["r4", "r5"]
    assert completions(scripted_server) == first * 6 // 4  # only the two new rows paid
    assert sorted(ids_in(out)) == [f"r{i}" for i in range(6)]  # each exactly once
    again = run_batch(rows(6), out=out, **engine(scripted_server))
    assert again.done == 0 and again.skipped == 6


def test_writer_never_writes_an_id_twice(tmp_path):
    writer = ResultWriter(tmp_path / "o.jsonl")
    assert writer.write(RowResult(id="a", status="final", answer="1"))
    assert not writer.write(RowResult(id="a", status="final", answer="2"))  # a retried task
    writer.close()
    assert [r.answer for r in read_results(tmp_path / "o.jsonl")] == ["1"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([{"context": "x", "query": "q"}], 'needs an "id"'),
        ([{"id": 1, "context": "x"}, {"id": "1", "context": "y"}], "appears twice"),
        ([{"id": 1, "context": "x", "context_path": "f"}], "not both"),
        ([{"id": 1, "contxt": "x"}], "unknown field"),
        ([{"id": 1, "context": "x", "query": 3}], "must be a string"),
    ],
)
def test_bad_rows_fail_before_any_lm_call(scripted_server, tmp_path, bad, message):
    out = tmp_path / "out.jsonl"
    with pytest.raises(RowError, match=message):
        run_batch(rows(2) + bad, out=out, **engine(scripted_server))
    assert completions(scripted_server) == 0
    assert not out.exists()


def test_jsonl_input_line_numbers_and_relative_paths(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("alpha")
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "context_path": "docs/a.txt", "query": "q"}\n\nnot json\n')
    with pytest.raises(RowError, match=r"in.jsonl:3: not a JSON object"):
        load_rows(src)
    src.write_text('{"id": "a", "context_path": "docs/a.txt", "query": "q"}\n')
    (row,) = load_rows(src)
    assert row == BatchRow("a", "q", None, str(tmp_path / "docs" / "a.txt"))
    assert row.load_context() == "alpha"


def test_unknown_option_is_an_error_before_any_work(scripted_server, tmp_path):
    with pytest.raises(TypeError, match="max_token"):
        run_batch(rows(1), out=tmp_path / "o.jsonl", max_token=5, **engine(scripted_server))
    with pytest.raises(ValueError, match="executor"):
        run_batch(rows(1), executor="spark", **engine(scripted_server))
    assert completions(scripted_server) == 0
