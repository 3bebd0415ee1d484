"""Fixtures for the LangChain tests: one scripted server (its model knows RLMChatModel's
tool calls and structured output, as every new ScriptedModel does)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rlm_engine.scripted.server import ScriptedServer


@pytest.fixture(scope="session")
def lc_server() -> Iterator[ScriptedServer]:
    """A scripted OpenAI-compatible server on 127.0.0.1 shared by the standard suites."""
    server = ScriptedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def vcr_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Record VCR cassettes in a temp dir: the server's port changes every run, so
    recordings can never be replayed and must not land in the repository."""
    return {
        "record_mode": "once",
        "cassette_library_dir": str(tmp_path_factory.mktemp("cassettes")),
        "match_on": ["method", "uri", "body"],
    }
