"""Headless Chromium for the browser tests: Debian's ``/usr/bin/chromium`` driven by
Playwright (no browser download), offline flags on.

A missing Chromium fails the test (``.ci/run`` installs it); ``RLM_TESTS_ALLOW_NO_BROWSER=1``
turns that into a skip, for machines that cannot have it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A launched Playwright browser, closed on exit."""
    if not Path(CHROMIUM).exists():
        msg = f"{CHROMIUM} not found: install Debian's chromium and chromium-driver (see .ci/run)"
        if os.environ.get("RLM_TESTS_ALLOW_NO_BROWSER") == "1":
            pytest.skip(msg)
        pytest.fail(msg)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
