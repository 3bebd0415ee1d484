"""rlm eval's HTML report in headless Chromium (Debian's /usr/bin/chromium via Playwright):
it opens from a file with no other request, no script error, and shows its plots.

Fails when Chromium is missing; ``RLM_TESTS_ALLOW_NO_BROWSER=1`` skips instead (as the
viewer's browser tests do).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_engine.config import RLMConfig
from rlm_engine.evals import ARMS, EvalSpec, run_eval, write_report
from tests.support.browser import chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def test_report_opens_offline_with_its_plots(browser: Any, tmp_path: Path) -> None:
    config = RLMConfig(backend="scripted", environment="local", root_context_window=12_000)
    spec = EvalSpec(suites=["niah", "aggregate"], sizes=[1_000, 4_000, 16_000], tasks=1)
    result = run_eval(spec, config, tmp_path, concurrency=4)
    html = write_report(result.records, tmp_path / "report.html", result.meta)

    ctx = browser.new_context(viewport={"width": 1100, "height": 1400})
    page = ctx.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: requests.append(r.url))
    page.goto(html.as_uri())
    page.wait_for_load_state("load")
    try:
        assert errors == []
        assert requests == [html.as_uri()]  # the page itself, nothing else
        assert "Simulation." in page.locator("#simulated").inner_text()
        charts = page.locator("svg.chart")
        assert charts.count() == 5  # all suites, two suites, cost, latency
        first = charts.first.bounding_box()
        assert first is not None and first["width"] > 300 and first["height"] > 200
        drawn = page.locator("#accuracy svg.chart").first.locator("polyline.series")
        assert sorted(drawn.evaluate_all("els => els.map(e => e.dataset.series)")) == sorted(ARMS)
        assert (
            "direct_threshold_tokens" in page.locator("#threshold").inner_text()
            or "keep mode" in page.locator("#threshold").inner_text()
        )
        rows = page.locator("#summary tr")
        assert rows.count() == 1 + 3 * 3 * len(ARMS)  # header; (2 suites + all) x 3 sizes x arms
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        assert (tmp_path / "report.png").stat().st_size > 10_000
    finally:
        ctx.close()
