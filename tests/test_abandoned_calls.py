"""An abandoned call stops at the server and is still counted, end to end.

The scripted server streams its replies one event per ``token_delay`` seconds and stops
generating when the client closes the stream, as vLLM and llama.cpp do; before streaming,
a timed-out request went on generating on the server while nobody read it.
"""

from __future__ import annotations

import time

import pytest

from rlm_engine import RLM
from rlm_engine.scripted import ScriptedModel, ScriptedServer

LONG_REPLY = "```repl\n" + "\n".join(f"x{i} = {i}" for i in range(200)) + "\n```"


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_run_timeout_closes_the_stream_and_the_server_stops(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer, backend: str
) -> None:
    scripted_model.add_rule(lambda r: r.is_rlm_root, [LONG_REPLY] * 5)
    scripted_server.token_delay = 0.05  # the whole reply would take several seconds
    base_url = scripted_server.url if backend == "anthropic" else scripted_server.base_url
    rlm = RLM(
        backend=backend,
        model="scripted-root",
        base_url=base_url,
        api_key="sk-test",
        environment="local",
        run_timeout=0.6,
        max_retries=0,
    )
    started = time.perf_counter()
    res = rlm.completion("c", "Count.")
    assert res.status == "timeout"
    assert time.perf_counter() - started < 5
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not scripted_server.stats.log:
        time.sleep(0.05)  # the server notices at its next event
    (rec,) = [r for r in scripted_server.stats.log if r.stream]
    assert rec.abandoned and rec.status == 499
    full = len(LONG_REPLY) // 4  # far more events than were sent
    assert 0 < rec.events_sent < full
    # The abandoned call is in the run's usage, as the client's estimate.
    root = res.usage.root
    assert root.calls == 1 and root.input_tokens > 0


def test_through_the_chat_model_too(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    from rlm_integrations.langchain import RLMChatModel, RLMTimeoutError

    scripted_model.add_rule(lambda r: r.is_rlm_root, [LONG_REPLY] * 5)
    scripted_server.token_delay = 0.05
    llm = RLMChatModel(
        backend="openai",
        model="scripted-root",
        base_url=scripted_server.base_url,
        api_key="sk-test",
        environment="local",
        run_timeout=0.6,
        max_retries=0,
        conversations=False,
    )
    with pytest.raises(RLMTimeoutError):
        llm.invoke("Count.", context="c")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not scripted_server.stats.log:
        time.sleep(0.05)
    (rec,) = [r for r in scripted_server.stats.log if r.stream]
    assert rec.abandoned and 0 < rec.events_sent < len(LONG_REPLY) // 4
