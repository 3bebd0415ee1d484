"""``RLM_REPL(model="auto")`` asks the server which model to use once per instance, not
on every completion (the engine makes fresh clients per completion): counted as
``GET /v1/models`` at the scripted server."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from rlm_engine.compat.rlm.rlm_repl import RLM_REPL
from rlm_engine.scripted import ScriptedModel
from rlm_engine.scripted.server import ScriptedServer

QUERY = "What is the magic number?"
CONTEXT = "The magic number is 42."


@pytest.fixture
def server(
    scripted_model: ScriptedModel, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ScriptedServer]:
    with ScriptedServer(scripted_model, models=["local-q4.gguf", "other.gguf"]) as srv:
        monkeypatch.setenv("RLM_API_URL", srv.base_url)
        yield srv


def _listings(server: ScriptedServer) -> int:
    return server.stats.by_path.get("/v1/models", 0)


def test_auto_is_looked_up_once_per_instance(server: ScriptedServer) -> None:
    rlm = RLM_REPL(model="auto", recursive_model="auto", environment="local")
    assert rlm.completion(CONTEXT, QUERY) == "42"
    first = _listings(server)
    assert 1 <= first <= 2
    for _ in range(3):
        assert rlm.completion(CONTEXT, QUERY) == "42"
    assert _listings(server) == first  # later completions ask nothing
    assert {r.model for r in server.stats.completions()} == {"local-q4.gguf"}
    assert rlm.cost_summary()["root_llm_calls"] >= 4
    # a new instance asks again (a server restarted with another model is picked up)
    RLM_REPL(model="auto", recursive_model="auto", environment="local").completion(CONTEXT, QUERY)
    assert _listings(server) == 2 * first


def test_a_named_model_is_never_looked_up(server: ScriptedServer) -> None:
    rlm = RLM_REPL(model="other.gguf", recursive_model="other.gguf", environment="local")
    for _ in range(2):
        assert rlm.completion(CONTEXT, QUERY) == "42"
    assert _listings(server) == 0
    assert {r.model for r in server.stats.completions()} == {"other.gguf"}


def test_auto_with_no_server_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RLM_API_URL", f"http://127.0.0.1:{port}/v1")
    rlm = RLM_REPL(model="auto", recursive_model="auto", environment="local")
    with pytest.raises(RuntimeError, match="RLM_API_URL") as info:
        rlm.completion(CONTEXT, QUERY)
    assert "RLM_REPL(model=" in str(info.value)
