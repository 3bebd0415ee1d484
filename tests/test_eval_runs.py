"""rlm eval end to end: every arm against the scripted server over HTTP, resumption, the
cost guard, the CLI and the report's HTML."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from rlm_engine.cli import main
from rlm_engine.config import RLMConfig
from rlm_engine.evals import ARMS, CostGuardError, EvalSpec, RunLog, run_eval
from rlm_engine.evals.records import RunRecord
from rlm_engine.evals.report import render
from rlm_engine.scripted import ScriptedModel
from rlm_engine.scripted.direct_sim import accuracy
from rlm_engine.scripted.server import ScriptedServer

WINDOW = 6_000  # tokens: 1k-token tasks go direct under auto (a quarter of it), 8k ones do not fit


def _config(server: ScriptedServer, **options: Any) -> RLMConfig:
    kw = {"base_url": server.base_url, "api_key": "sk-test", "max_retries": 1}
    return RLMConfig(
        backend="openai",
        backend_kwargs={"model_name": "scripted-root", "pricing": [1.0, 4.0], **kw},
        sub_backend_kwargs={"model_name": "scripted-sub", "pricing": [0.1, 0.4], **kw},
        environment="local",
        root_context_window=WINDOW,
        **options,
    )


def _by(records: list[RunRecord]) -> dict[tuple[str, str, int], RunRecord]:
    return {(r.arm, r.suite, r.size): r for r in records}


def test_every_arm_runs_on_every_suite_over_http(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    spec = EvalSpec(sizes=[1_000, 8_000], tasks=1)
    result = run_eval(spec, _config(scripted_server), tmp_path, max_cost=1.0, concurrency=4)
    recs = _by(result.records)
    assert len(recs) == 5 * 2 * len(ARMS) == result.ran
    # No root call (direct or RLM turn) was ever sent past the window; sub-calls read chunks.
    biggest_root = max(r.prompt_tokens for r in scripted_server.stats.completions("scripted-root"))
    assert biggest_root < WINDOW
    for suite in ("niah", "multi", "aggregate", "pairs", "codeqa"):
        for size in (1_000, 8_000):
            for arm in ("rlm", "rlm-d2"):
                r = recs[(arm, suite, size)]
                assert (r.status, r.score, r.path) == ("final", 1.0, "rlm"), r
                assert r.iterations >= 2 and r.sub_calls >= 1 and r.cost and r.cost > 0
                assert r.input_tokens > size  # the sub-calls read the whole context
            small = recs[("direct", suite, 1_000)]
            assert small.status == "final" and small.path == "direct" and small.iterations == 0
            assert small.sub_calls == 0 and small.input_tokens >= 1_000 and small.cost
            big = recs[("direct", suite, 8_000)]
            assert (big.status, big.score, big.input_tokens, big.cost) == (
                "over_window",
                0.0,
                0,
                None,
            )
            assert "not sent" in big.path_reason
            assert recs[("auto", suite, 1_000)].path == "direct"
            auto_big = recs[("auto", suite, 8_000)]
            assert (auto_big.path, auto_big.score) == ("rlm", 1.0)
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["type"] == "meta" and json.loads(lines[0])["window"] == WINDOW
    row = json.loads(lines[1])
    for field in (
        "answer",
        "score",
        "status",
        "input_tokens",
        "output_tokens",
        "cost",
        "latency",
        "iterations",
        "sub_calls",
    ):
        assert field in row


def test_resume_runs_only_what_is_missing(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    config = _config(scripted_server)
    first = run_eval(
        EvalSpec(suites=["niah", "aggregate"], sizes=[1_000], arms=["direct", "rlm"], tasks=2),
        config,
        tmp_path,
    )
    assert first.ran == 8 and first.resumed == 0
    sent = scripted_server.stats.requests
    # A crash cut the last line short: that run is lost and run again; nothing else is.
    log = tmp_path / "runs.jsonl"
    text = log.read_text()
    lost = json.loads(text.splitlines()[-1])
    log.write_text(text[: len(text) - 40])
    again = run_eval(
        EvalSpec(suites=["niah", "aggregate"], sizes=[1_000], arms=["direct", "rlm"], tasks=2),
        config,
        tmp_path,
    )
    assert again.ran == 1 and again.resumed == 7
    metas, _ = RunLog(log).read()
    assert len(metas) == 2  # the next line after the cut one starts a line of its own
    assert [
        (r.arm, r.suite, r.index) for r in again.records if r.key == RunRecord.from_dict(lost).key
    ]
    assert scripted_server.stats.requests - sent <= 6  # one run, not eight
    more = run_eval(
        EvalSpec(suites=["niah", "aggregate"], sizes=[1_000], arms=list(ARMS), tasks=2),
        config,
        tmp_path,
    )
    assert more.ran == 8 and more.resumed == 8 and len(more.records) == 16
    _, runs = RunLog(log).read()
    assert len(runs) == 16


def test_cost_guard_refuses_before_anything_is_sent(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    spec = EvalSpec(suites=["niah"], sizes=[1_000, 500_000], tasks=3)
    with pytest.raises(CostGuardError, match="over --max-cost"):
        run_eval(spec, _config(scripted_server), tmp_path, max_cost=0.01)
    assert scripted_server.stats.completions() == []
    assert not (tmp_path / "runs.jsonl").exists()


def test_spending_stops_new_runs(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    """The estimate passes, but the runs cost more than it said (sub-calls answer at
    length, priced high): no run starts once max_cost is spent, and a run's own engine
    budget is what was left of it."""
    scripted_model.add_rule(lambda req: req.model == "scripted-sub", "word " * 20_000)
    kw = {"base_url": scripted_server.base_url, "api_key": "sk-test", "max_retries": 1}
    config = _config(scripted_server).replace(
        backend_kwargs={"model_name": "scripted-root", "pricing": [0.0, 0.0], **kw},
        sub_backend_kwargs={"model_name": "scripted-sub", "pricing": [0.0, 1_000.0], **kw},
    )
    spec = EvalSpec(suites=["niah"], sizes=[1_000], arms=["rlm"], tasks=4)
    result = run_eval(spec, config, tmp_path, max_cost=5.0, concurrency=1)
    assert result.estimate.cost is not None and result.estimate.cost < 5.0
    assert result.ran == 1 and result.stopped is not None and "spent" in result.stopped
    (run,) = result.records
    assert run.status == "budget" and run.cost is not None and run.cost > 5.0


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.ids: set[str] = set()
        self.series: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        for key in ("src", "href", "xlink:href", "action"):
            if a.get(key):
                self.urls.append(str(a[key]))
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if a.get("data-series"):
            self.series.append(str(a["data-series"]))


def test_cli_runs_writes_report_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ev"
    argv = [
        "eval",
        "--backend",
        "scripted",
        "--suites",
        "niah,pairs",
        "--sizes",
        "1k,40k",
        "--tasks",
        "1",
        "--out",
        str(out),
        "--root-context-window",
        "30000",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "estimate: 16 runs" in captured.err and "report:" in captured.err
    assert "auto threshold:" in captured.out and "simulation" in captured.out
    for name in ("runs.jsonl", "summary.txt", "report.html"):
        assert (out / name).exists()
    page = _Page()
    page.feed((out / "report.html").read_text())
    assert (
        page.tags.count("svg") >= 5
        and {"simulated", "summary", "threshold", "accuracy"} <= page.ids
    )
    assert set(page.series) >= set(ARMS)
    assert page.urls == []  # nothing to fetch: it opens offline
    assert main(argv) == 0
    assert "resumed: 16 runs" in capsys.readouterr().err
    assert main(["eval", "--report-only", "--out", str(out)]) == 0


def test_cli_cost_guard_and_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ev"
    base = [
        "eval",
        "--backend",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "gpt-5-mini",
        "--out",
        str(out),
    ]
    assert main([*base, "--max-cost", "0.01"]) == 1
    err = capsys.readouterr().err
    assert "cost guard" in err and "nothing was sent" in err and not out.exists()
    assert main([*base, "--model", "my-local-model", "--suites", "niah", "--sizes", "1k"]) == 1
    assert "no known price for my-local-model" in capsys.readouterr().err
    assert main([*base, "--dry-run", "--max-cost", "none", "--mode", "direct"]) == 0
    err = capsys.readouterr().err
    assert "estimate:" in err and "--mode ignored: each arm sets" in err and not out.exists()
    assert main(["eval", "--suites", "nope"]) == 64
    assert main(["eval", "--sizes", "huge"]) == 64


def test_report_without_simulation_has_no_banner() -> None:
    recs = [RunRecord("rlm", "niah", 8_000, 0, 0, "final", 1.0, cost=0.01)]
    html = render(recs, {"backend": "openai", "model": "gpt-5-mini", "simulated": False})
    assert 'id="simulated"' not in html and "gpt-5-mini" in html


def test_direct_simulation_decays_with_length_and_has_a_window() -> None:
    assert accuracy(8_000, "niah") > 0.9 > accuracy(128_000, "niah") > accuracy(128_000, "pairs")
    assert accuracy(300_000, "niah") == 0.0


def test_batch_runner_gives_the_local_runners_records(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    """``executor="ray"`` goes through the batch runner (rlm_engine.batch); here its local
    executor stands in for Ray: same statuses, scores, paths, sub-calls and tokens as the
    harness's own runner, and over-window direct runs are still not sent."""
    import asyncio

    from rlm_engine.evals.arms import root_window
    from rlm_engine.evals.on_batch import run_on_batch
    from rlm_engine.evals.suites import generate

    config = _config(scripted_server)
    spec = EvalSpec(suites=["niah", "pairs"], sizes=[1_000, 8_000], tasks=1)
    local = _by(run_eval(spec, config, tmp_path).records)
    window = asyncio.run(root_window(config))
    tasks = [generate(s, 0, n, 0) for s in ("niah", "pairs") for n in (1_000, 8_000)]
    for arm in ARMS:
        for rec in asyncio.run(
            run_on_batch(arm, tasks, config, window, executor="local", concurrency=4)
        ):
            mine = local[(arm, rec.suite, rec.size)]
            same = (
                "status",
                "score",
                "path",
                "iterations",
                "sub_calls",
                "input_tokens",
                "output_tokens",
            )
            assert {f: getattr(rec, f) for f in same} == {f: getattr(mine, f) for f in same}
            # Costs differ by what the server's simulated prompt cache had seen before.
            assert (rec.cost is None) == (mine.cost is None)


def test_unknown_executor_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="executor must be one of local, ray"):
        run_eval(
            EvalSpec(suites=["niah"], sizes=[1_000], tasks=1),
            RLMConfig(backend="scripted"),
            tmp_path,
            executor="spark",
        )
    assert not (tmp_path / "runs.jsonl").exists()
