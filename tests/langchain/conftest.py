"""Fixtures for the LangChain tests: one scripted server with the RLMChatModel skills."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rlm_engine.scripted import ScriptedModel
from rlm_engine.scripted.server import ScriptedServer
from rlm_engine.scripted.skills.langchain import install


@pytest.fixture(scope="session")
def lc_server() -> Iterator[ScriptedServer]:
    """A scripted OpenAI-compatible server on 127.0.0.1 shared by the standard suites."""
    server = ScriptedServer(install(ScriptedModel()))
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
