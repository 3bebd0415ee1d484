"""Shared fixtures: the scripted model behind a real OpenAI/Anthropic-compatible server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rlm_engine.scripted import ScriptedModel
from rlm_engine.scripted.server import ScriptedServer


@pytest.fixture
def scripted_model() -> ScriptedModel:
    return ScriptedModel()


@pytest.fixture
def scripted_server(scripted_model: ScriptedModel) -> Iterator[ScriptedServer]:
    """A fresh server per test on 127.0.0.1 (random port); stopped by the fixture."""
    server = ScriptedServer(scripted_model)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def openai_kwargs(scripted_server: ScriptedServer) -> dict:
    """``backend_kwargs`` for ``RLM(backend="openai")`` pointed at the scripted server."""
    return {"model_name": "scripted-root", "base_url": scripted_server.base_url, "api_key": "sk-test",
            "max_retries": 2}


@pytest.fixture
def sub_kwargs(scripted_server: ScriptedServer) -> dict:
    return {"model_name": "scripted-sub", "base_url": scripted_server.base_url, "api_key": "sk-test",
            "max_retries": 2}
