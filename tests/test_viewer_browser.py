"""The trajectory viewer: trace parsing and HTML rendering, then the page itself in headless
Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright; no browser download).

The browser tests fail when Chromium is missing; set ``RLM_TESTS_ALLOW_NO_BROWSER=1`` to
skip them instead. ``RLM_UPDATE_SCREENSHOT=1`` copies the screenshot to ``docs/viewer.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from support.synthetic import HOSTILE, synthetic_records, write_synthetic_trace

from rlm_engine import RLM, Iteration, RLMLogger
from rlm_engine.viewer import build_payload, embed_json, load_trace, write_html
from rlm_engine.viewer.render import SUBCALL_FIELDS
from rlm_engine.viewer.trace import TraceError, computed_usage, iteration_summary
from tests.support.browser import chromium

REPO = Path(__file__).resolve().parent.parent
LOAD_TIMEOUT_MS = 90_000  # a generous bound for the 100,000 sub-call page on a busy machine


# ---------------------------------------------------------------------------- no browser


def test_embed_json_cannot_close_the_script_element() -> None:
    data = {"s": "</script><!-- <script>alert(1)</script> & \u2028\u2029 ok"}
    text = embed_json(data)
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in text
    assert json.loads(text) == data


def test_synthetic_records_match_the_engine_types() -> None:
    records = synthetic_records(iterations=5, subcalls_per_iteration=3, child_depth=1)
    assert [r["type"] for r in records] == ["metadata"] + ["iteration"] * 5 + ["result"]
    for rec in records[1:-1]:
        it = Iteration.from_dict(
            {k: v for k, v in rec.items() if k not in ("type", "run_id", "depth")}
        )
        for sc in it.subcalls:
            for child in sc.children:
                Iteration.from_dict(
                    {k: v for k, v in child.items() if k not in ("type", "run_id", "depth")}
                )
    assert any(
        sc["children"] for rec in records[1:-1] for b in rec["code_blocks"] for sc in b["subcalls"]
    )


def test_usage_totals_include_child_rlm_calls() -> None:
    child = {"input_tokens": 10, "output_tokens": 5, "cost": 0.5, "code_blocks": [
        {"subcalls": [{"input_tokens": 3, "output_tokens": 1, "cost": None, "children": []}]}
    ]}  # fmt: skip
    it = {
        "index": 0, "input_tokens": 100, "output_tokens": 20, "cost": 1.0, "duration": 2.0,
        "final_answer": None,
        "code_blocks": [{"error": "NameError: x", "subcalls": [
            {"input_tokens": 7, "output_tokens": 2, "cost": 0.25, "error": None, "children": []},
            {"input_tokens": 0, "output_tokens": 0, "cost": None, "error": None, "children": [child]},
        ]}],
    }  # fmt: skip
    s = iteration_summary(it)
    assert (s["subcalls"], s["sub_calls"], s["errors"]) == (2, 3, 1)  # the child made 2 calls
    assert s["sub_tokens"] == 9 + 15 + 4 and s["sub_cost"] == 0.75
    assert s["root_tokens"] == 120
    u = computed_usage([it])
    assert u["root"]["calls"] == 1 and u["sub"]["calls"] == 3 and u["total"]["calls"] == 4
    assert u["total"]["cost"] == 1.75


def test_load_trace_errors_and_packing(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="not found"):
        load_trace(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(TraceError, match="no trajectory records"):
        load_trace(tmp_path / "empty.jsonl")
    trace = load_trace(write_synthetic_trace(tmp_path / "t.jsonl", iterations=3))
    assert trace.complete and trace.warnings == []
    payload = build_payload(trace)
    first = trace.iterations[0]["code_blocks"][0]["subcalls"][0]
    packed = payload["iterations"][0]["code_blocks"][0]["subcalls"][0]
    assert dict(zip(SUBCALL_FIELDS, packed, strict=True))["prompt"] == first["prompt"]
    assert payload["summary_fields"][0] == "index" and len(payload["summary"]) == 3


# ---------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1680})
    pg = ctx.new_page()
    errors: list[str] = []
    requests: list[str] = []
    pg.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    pg.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    pg.on("request", lambda r: requests.append(r.url))
    yield pg
    ctx.close()
    assert errors == []
    # Self-contained: the only thing the page loads is itself.
    assert all(u.startswith("file://") for u in requests), requests


def open_viewer(page: Any, html: Path) -> float:
    started = time.monotonic()
    page.goto(html.as_uri())
    page.wait_for_selector("body[data-ready]", timeout=LOAD_TIMEOUT_MS)
    return time.monotonic() - started


def visible_text(page: Any, selector: str) -> str:
    loc = page.locator(selector).first
    loc.wait_for(state="visible")
    return (loc.text_content() or "").strip()  # as written, not as CSS capitalizes it


def real_trace(tmp_path: Path, server: Any) -> Path:
    """A completion by the engine over HTTP against the scripted server, logged to JSONL."""
    filler = [f"Line {i}: routine entry, nothing to report." for i in range(9000)]
    filler.insert(6100, "The secret code is 4412.")
    logger = RLMLogger(tmp_path / "logs")
    kwargs = {"base_url": server.base_url, "api_key": "sk-test", "max_retries": 1}
    rlm = RLM(
        backend="openai",
        backend_kwargs={"model_name": "scripted-root", "pricing": (1.25, 10.0), **kwargs},
        sub_backend_kwargs={"model_name": "scripted-sub", "pricing": (0.25, 2.0), **kwargs},
        logger=logger,
    )
    res = rlm.completion("\n".join(filler), query="What is the secret code?")
    assert res.status == "final" and res.response == "4412"
    assert logger.last_path is not None
    return logger.last_path


def test_real_trace_click_iteration_expand_subcall_screenshot(
    page: Any, tmp_path: Path, scripted_server: Any
) -> None:
    trace = real_trace(tmp_path, scripted_server)
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    iterations = [r for r in records if r["type"] == "iteration"]
    assert len(iterations) >= 2
    html = write_html(trace, tmp_path / "viewer.html")
    open_viewer(page, html)

    assert visible_text(page, "#answer .text") == "4412"
    assert visible_text(page, "#query .text") == "What is the secret code?"
    assert "scripted-root" in visible_text(page, "#query")
    page.locator("#query .sysprompt summary", has_text="System prompt").click()
    assert "persistent Python REPL" in visible_text(page, "#query .sysprompt[open] pre")
    page.locator("#query .sysprompt summary", has_text="System prompt").click()  # closed again
    preview = page.locator("#query .sysprompt", has_text="Context preview")
    preview.locator("summary").click()
    assert "Line 0: routine entry" in preview.locator("pre").inner_text()
    preview.locator("summary").click()
    assert visible_text(page, "#summary .card .value") == str(len(iterations))
    # The first iteration is selected on load; click the second in the timeline.
    assert visible_text(page, "#it-head h3") == f"Iteration #{iterations[0]['index']}"
    page.click(".tl-row[data-pos='1']")
    assert visible_text(page, "#it-head h3") == f"Iteration #{iterations[1]['index']}"
    code = iterations[1]["code_blocks"][0]["code"]
    assert code.splitlines()[0] in visible_text(page, ".code-block pre.code")
    assert page.locator(".code-block pre.code span.tok-r").count() >= 1  # llm_query highlighted

    # Back to the first iteration: its batched sub-calls, expanded one by one.
    page.keyboard.press("k")
    assert visible_text(page, "#it-head h3") == f"Iteration #{iterations[0]['index']}"
    subcalls = iterations[0]["code_blocks"][0]["subcalls"]
    assert len(subcalls) >= 2
    rows = page.locator(".code-block details.sc")
    assert rows.count() == len(subcalls)
    found = next(i for i, s in enumerate(subcalls) if s["response"] == "4412")
    row = rows.nth(found)
    assert not row.locator(".sc-body").count()  # details are built on first expand
    row.locator("summary").click()
    body = row.locator(".sc-body")
    body.wait_for(state="visible")  # built by the <details> toggle event
    assert " ".join(subcalls[found]["prompt"].split()[:12]) in " ".join(body.inner_text().split())
    assert body.locator("pre.out.final").inner_text() == "4412"
    assert "scripted-sub" in body.locator(".kv").inner_text()
    assert "$" in visible_text(page, "#summary .card:nth-child(5) .value")  # priced models

    # The README screenshot: the final iteration with its sub-call open, from the top.
    page.click(".tl-row[data-pos='1']")
    page.locator(".code-block details.sc summary").first.click()
    page.locator(".sc-body").wait_for(state="visible")
    page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "viewer.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000
    if os.environ.get("RLM_UPDATE_SCREENSHOT") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, REPO / "docs" / "viewer.png")


def test_hostile_model_output_is_shown_as_text_not_run(page: Any, tmp_path: Path) -> None:
    html = write_html(write_synthetic_trace(tmp_path / "h.jsonl", iterations=2, hostile=True))
    open_viewer(page, html)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img").count() == 0
    assert HOSTILE in visible_text(page, "#query .text")
    assert HOSTILE in visible_text(page, ".root-response")
    page.locator(".code-block details.sc summary").first.click()
    page.locator(".sc-body").wait_for(state="visible")
    assert HOSTILE in visible_text(page, ".sc-body pre.out")
    assert page.evaluate("window.__pwned") is None


def test_nested_rlm_query_children_and_navigation(page: Any, tmp_path: Path) -> None:
    trace = write_synthetic_trace(tmp_path / "n.jsonl", iterations=6, subcalls_per_iteration=3)
    open_viewer(page, write_html(trace))
    page.click(".tl-row[data-pos='1']")  # iterations with index % 3 == 1 call rlm_query
    rlm_row = page.locator("details.sc", has=page.locator(".sc-fn", has_text="rlm_query"))
    assert rlm_row.count() == 1
    rlm_row.locator("summary").click()
    children = rlm_row.locator(".children")
    children.wait_for(state="visible")
    assert "Child RLM trajectory · depth 1 · 2 iterations" in children.text_content()
    child = children.locator("details.child").first
    child.locator("summary").click()
    child.locator(".root-response").wait_for(state="visible")
    assert "Child root response" in child.text_content()
    assert "Iteration 0: I will look at the chunks" in child.locator(".root-response").inner_text()

    # Keyboard and filters.
    page.keyboard.press("j")
    assert visible_text(page, "#it-head h3") == "Iteration #2"
    page.select_option("#tl-filter", "errors")  # index % 5 == 2 has a NameError block
    assert visible_text(page, "#tl-count") == "(1 of 6)"
    page.select_option("#tl-filter", "all")
    page.fill("#tl-search", "totl")
    expect(page.locator("#tl-count")).to_have_text("(1 of 6)")  # filtering is debounced
    page.fill("#tl-search", "")
    expect(page.locator("#tl-count")).to_have_text("(6)")
    # Clicking the chart selects the iteration under the pointer (the last bar here).
    box = page.locator("#chart").bounding_box()
    page.mouse.click(box["x"] + box["width"] - 60, box["y"] + box["height"] / 2)
    assert visible_text(page, "#it-head h3") == "Iteration #5"
    assert page.url.endswith("#it=5")


def test_incomplete_trace_shows_what_is_there(page: Any, tmp_path: Path) -> None:
    trace = write_synthetic_trace(tmp_path / "c.jsonl", iterations=3, complete=False)
    open_viewer(page, write_html(trace))
    assert "did not finish" in visible_text(page, "#warnings")
    assert "No result recorded" in visible_text(page, "#answer")
    assert visible_text(page, "#run-info .badge") == "incomplete"
    assert page.locator(".tl-row").count() == 3


def test_interrupted_run_shows_its_partial_iteration(page: Any, tmp_path: Path) -> None:
    """Ctrl-C in ``rlm run``: an ``interrupted`` result, not "crashed or still running"."""
    from types import SimpleNamespace

    from rlm_engine.logger import IterationRecorder
    from rlm_engine.state import RLMState
    from rlm_engine.usage import Usage

    records = synthetic_records(iterations=2, complete=False, hostile=False)
    rec = IterationRecorder()
    for e in (
        {"event": "iteration_start", "iteration": 2},
        {"event": "root_response", "text": "Reading the chunks.", "input_tokens": 9},
        {"event": "code_start", "code": "answers = llm_query_batched(chunks)"},
        {"event": "subcall_start", "function": "llm_query_batched"},
        {"event": "subcall_start", "function": "llm_query_batched"},
        {"event": "subcall_end", "function": "llm_query_batched", "prompt": "chunk 1",
         "response": "NOT FOUND", "model": "gpt-5-mini", "error": None},
    ):  # fmt: skip
        rec({"depth": 0, **e})
    state = RLMState(query="q", context_info={}, system="", first_user="", run_id="synthetic")
    state.iterations = [Iteration(index=i, response="") for i in (0, 1)]  # the finished two
    logger = RLMLogger(tmp_path / "logger")
    logger.log_interrupted(
        SimpleNamespace(state=state, shared=SimpleNamespace(usage=Usage())), rec.partial()
    )
    ending = logger.last_path.read_text() if logger.last_path else ""
    trace = tmp_path / "interrupted.jsonl"
    trace.write_text("".join(json.dumps(r) + "\n" for r in records) + ending)

    open_viewer(page, write_html(trace))
    assert visible_text(page, "#run-info .badge") == "interrupted"
    assert "interrupted (Ctrl-C) during iteration 2" in visible_text(page, "#warnings")
    assert "No answer (interrupted)." in visible_text(page, "#answer")
    row = page.locator(".tl-row").nth(2)
    assert "interrupted" in (row.text_content() or "")
    row.click()
    assert "Partial iteration: interrupted while code block 1 ran" in visible_text(
        page, ".interrupted-note"
    )
    block = page.locator(".code-block").first
    assert "interrupted" in (block.locator(".panel-head").text_content() or "")
    assert "1 unfinished sub-call(s) were abandoned" in (block.text_content() or "")


def test_result_warnings_are_shown_with_the_answer(page: Any, tmp_path: Path) -> None:
    records = synthetic_records(iterations=1, hostile=False)
    warning = "every sub-call of this run failed; the answer rests on no sub-model output"
    records[-1]["warnings"] = [warning]
    trace = tmp_path / "w.jsonl"
    trace.write_text("".join(json.dumps(r) + "\n" for r in records))
    open_viewer(page, write_html(trace))
    assert visible_text(page, "#answer .answer-warnings") == warning


def test_thousand_iterations_hundred_thousand_subcalls_render_lazily(
    page: Any, tmp_path: Path
) -> None:
    trace = write_synthetic_trace(
        tmp_path / "big.jsonl",
        iterations=1000,
        subcalls_per_iteration=100,
        child_depth=0,
        hostile=False,
    )
    html = write_html(trace)
    load_s = open_viewer(page, html)
    stats = page.evaluate("window.__rlmViewer")
    nodes = page.evaluate("document.getElementsByTagName('*').length")
    print(
        f"1,000 iterations / 100,000 sub-calls: HTML {html.stat().st_size / 1e6:.1f} MB, "
        f"load {load_s:.2f}s (JSON.parse {stats['parseMs']:.0f} ms, first render "
        f"{stats['renderMs']:.0f} ms), {nodes} DOM elements"
    )
    assert stats["iterations"] == 1000
    assert visible_text(page, "#summary .card:nth-child(3) .value") == "100,000"
    assert nodes < 3000  # only visible rows and one iteration's first page of sub-calls
    assert page.locator(".tl-row").count() < 60
    assert page.locator("details.sc").count() == 25
    assert visible_text(page, ".pager span") == "sub-calls 1–25 of 100"
    page.click(".pager button:has-text('Next')")
    assert visible_text(page, ".pager span") == "sub-calls 26–50 of 100"

    # Scroll the virtual list to the end and open the last iteration.
    page.locator("#tl-scroll").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    last = page.locator(".tl-row[data-pos='999']")
    last.wait_for(state="visible")
    last.click()
    assert visible_text(page, "#it-head h3") == "Iteration #999"
    assert page.evaluate("document.getElementsByTagName('*').length") < 3000


def test_failed_run_without_iterations(page: Any, tmp_path: Path) -> None:
    meta, *_ = synthetic_records(iterations=1, hostile=False)
    error = "Root LM call failed after retries: APIConnectionError: Connection error."
    result = {"type": "result", "run_id": "synthetic", "status": "error", "response": None,
              "error": error, "duration": 0.2, "iterations": 0, "usage": computed_usage([])}  # fmt: skip
    trace = tmp_path / "err.jsonl"
    trace.write_text(json.dumps(meta) + "\n" + json.dumps(result) + "\n")
    open_viewer(page, write_html(trace))
    assert visible_text(page, "#answer .text") == error
    assert visible_text(page, "#run-info .badge") == "error"
    assert visible_text(page, "#detail") == "This trace has no iterations."
    assert page.locator(".tl-row").count() == 0


def test_real_rlm_query_trace_nests_the_child_run(
    page: Any, tmp_path: Path, scripted_server: Any, scripted_model: Any
) -> None:
    """A root that delegates to ``rlm_query``: the child RLM's iterations open inside it."""
    delegate = (
        "I will hand the search to a child RLM.\n```repl\n"
        'answer = rlm_query("What is the secret code?", context=context)\n'
        'print("CHILD SAID: " + answer)\n```'
    )
    scripted_model.add_rule(lambda r: r.is_rlm_root, delegate, times=1)
    scripted_model.add_rule("CHILD SAID: ", "FINAL_VAR(answer)", times=1)
    filler = [f"Row {i}: nothing here." for i in range(3000)]
    filler.insert(1700, "The secret code is 5150.")
    logger = RLMLogger(tmp_path / "logs")
    kwargs = {"base_url": scripted_server.base_url, "api_key": "sk-test", "max_retries": 1}
    res = RLM(
        backend="openai",
        backend_kwargs={"model_name": "scripted-root", **kwargs},
        max_depth=2,
        logger=logger,
    ).completion("\n".join(filler), query="What is the secret code?")
    assert (res.status, res.response) == ("final", "5150")
    rec = [json.loads(line) for line in logger.last_path.read_text().splitlines()]
    call = rec[1]["code_blocks"][0]["subcalls"][0]
    assert call["function"] == "rlm_query" and len(call["children"]) >= 2

    open_viewer(page, write_html(logger.last_path))
    row = page.locator("details.sc", has=page.locator(".sc-fn", has_text="rlm_query"))
    n = len(call["children"])
    assert f"{n} child it." in row.locator("summary").inner_text()
    row.locator("summary").click()
    children = row.locator(".children")
    children.wait_for(state="visible")
    assert f"Child RLM trajectory · depth 1 · {n} iterations" in children.text_content()
    first = children.locator("details.child").first
    first.locator("summary").click()
    first.locator(".code-block").first.wait_for(state="visible")
    child_code = call["children"][0]["code_blocks"][0]["code"]
    assert child_code.splitlines()[0] in first.locator(".code-block pre.code").first.text_content()
    # The child's own sub-calls are listed (and expandable) inside the child iteration.
    inner = first.locator("details.sc")
    assert inner.count() == len(call["children"][0]["code_blocks"][0]["subcalls"]) > 0
    assert visible_text(page, "#answer .text") == "5150"
