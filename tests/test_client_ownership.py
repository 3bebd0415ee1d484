"""A ready ``LMClient`` the user passes as ``backend`` is theirs: the engine uses it and
leaves it open. Before, every completion closed it at the end, so the second
``completion`` of the same ``RLM`` failed with "client has been closed" (and so did a
LangGraph ``route`` -> ``generate`` hand-over with an instance backend)."""

from __future__ import annotations

from rlm_engine import RLM
from rlm_engine.clients.openai import OpenAIClient
from rlm_engine.scripted import ScriptedModel, ScriptedServer


def test_a_client_instance_survives_completions_and_conversations(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    scripted_model.add_rule(lambda r: r.is_rlm_root, "FINAL(ok)")
    client = OpenAIClient("scripted-root", scripted_server.base_url, "sk-test")
    sub = OpenAIClient("scripted-sub", scripted_server.base_url, "sk-test")
    rlm = RLM(backend=client, sub_backend=sub, environment="local")
    assert rlm.completion("c", "q").response == "ok"
    assert rlm.completion("c", "q").response == "ok"  # was: the client has been closed
    with rlm.conversation("c") as conv:
        assert conv.send("q").response == "ok"
    assert client.complete([{"role": "user", "content": "What is 2+2?"}]).text
    assert sub.complete([{"role": "user", "content": "What is 2+2?"}]).text


def test_an_anthropic_client_instance_serves_completion_after_completion(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    """Each ``completion`` runs on a fresh event loop; the async SDK client made on the
    first one failed on the next ("Event loop is closed"): one SDK client per loop."""
    from rlm_engine.clients.anthropic import AnthropicClient

    scripted_model.add_rule(lambda r: r.is_rlm_root, "FINAL(ok)")
    client = AnthropicClient("scripted-root", scripted_server.url, "sk-ant")
    rlm = RLM(backend=client, environment="local")
    assert [rlm.completion("c", "q").response for _ in range(3)] == ["ok"] * 3


def test_clients_the_engine_made_are_still_closed(scripted_server: ScriptedServer) -> None:
    from rlm_engine.aio import run_sync
    from rlm_engine.config import make_config
    from rlm_engine.resources import RunResources

    config = make_config(
        None,
        backend="openai",
        model="scripted-root",
        base_url=scripted_server.base_url,
        api_key="sk-test",
        environment="local",
    )
    shared = RunResources(config)
    run_sync(shared.aclose())
    assert shared.root_client._async.is_closed()  # made here, so closed here
