"""Real-server behaviours through the LangGraph form, on both wires.

The graph runs the engine's steps with the engine's clients, so what the plain engine
does for cut replies, strict chat templates and abandoned calls must hold here too: a
root reply cut at the reply cap is told as such and its unfinished block does not run;
a strict server (roles must alternate) accepts every request, the out-of-turns final
answer request included; a run timeout closes the stream so the server stops
generating, and the abandoned call is still counted.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from rlm_engine.prompts import FINAL_ANSWER_REQUEST
from rlm_engine.scripted import Request, ScriptedModel
from rlm_engine.scripted.server import ScriptedServer
from rlm_integrations.langgraph import build_rlm_graph

CAP = 50
LONG_TURN = "```repl\nmarker = 'ran'\n" + "".join(f"# step {i}: more\n" for i in range(80)) + "```"
LONG_REPLY = "```repl\n" + "\n".join(f"x{i} = {i}" for i in range(200)) + "\n```"


def graph_for(server: ScriptedServer, backend: str, **options: Any):
    base_url = server.base_url if backend == "openai" else server.url
    return build_rlm_graph(
        backend=backend,
        backend_kwargs={"base_url": base_url, "api_key": "sk-test", "model": "scripted-root"},
        environment="local",
        **options,
    ).compile()


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_cut_root_reply_is_told_and_its_block_does_not_run(
    scripted_model: ScriptedModel, backend: str
) -> None:
    seen: list[str] = []

    def after(r: Request) -> str:
        seen.append(r.last_user)
        return "FINAL(done)" if len(seen) > 1 else "```repl\nprint(globals().get('marker'))\n```"

    scripted_model.add_rule(lambda r: r.is_rlm_root, [LONG_TURN])
    scripted_model.add_rule(lambda r: r.is_rlm_root, after)
    with ScriptedServer(scripted_model, max_reply_tokens=CAP) as server:
        out = graph_for(server, backend, max_iterations=4).invoke({"context": "c", "query": "q"})
        finishes = [r.finish_reason for r in server.stats.completions()]
    assert out["status"] == "final" and out["final_answer"] == "done"
    first = out["history"][0]
    assert first["code_blocks"] == []
    assert f"cut off at the reply cap of {CAP} tokens" in first["feedback"]
    assert f"cut off at the reply cap of {CAP} tokens" in seen[0]
    assert "None" in seen[1]  # the unfinished block never set `marker`
    assert finishes[0] == "length"


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_the_final_answer_request_is_accepted_by_a_strict_server(
    scripted_model: ScriptedModel, backend: str
) -> None:
    """Iterations run out: the graph's best-answer request must keep roles alternating,
    or a strict chat template answers 400 and the run falls back to REPL variables."""
    scripted_model.add_rule(
        lambda r: r.is_rlm_root and FINAL_ANSWER_REQUEST in r.last_user, "FINAL(best guess)"
    )
    scripted_model.add_rule(lambda r: r.is_rlm_root, "```repl\nprint('working')\n```")
    with ScriptedServer(scripted_model, strict_roles=True) as server:
        out = graph_for(server, backend, max_iterations=2).invoke({"context": "c", "query": "q"})
        statuses = [r.status for r in server.stats.log]
    assert out["status"] == "max_iterations"
    assert 400 not in statuses, statuses
    assert out["partial_answer"] == "best guess"  # the model's answer, not a fallback


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_run_timeout_frees_the_server_and_the_call_is_counted(
    scripted_model: ScriptedModel, backend: str
) -> None:
    scripted_model.add_rule(lambda r: r.is_rlm_root, [LONG_REPLY] * 5)
    with ScriptedServer(scripted_model, token_delay=0.05) as server:
        started = time.perf_counter()
        out = graph_for(server, backend, run_timeout=0.6, max_retries=0).invoke(
            {"context": "c", "query": "Count."}
        )
        elapsed = time.perf_counter() - started
        deadline = time.monotonic() + 5  # the server notices at its next event
        while time.monotonic() < deadline and not [r for r in server.stats.log if r.stream]:
            time.sleep(0.05)
        records = [r for r in server.stats.log if r.stream]
    assert out["status"] == "timeout"
    assert elapsed < 5
    (rec,) = records
    assert rec.abandoned and rec.status == 499
    assert 0 < rec.events_sent < len(LONG_REPLY) // 4
    root = out["usage"]["root"]
    assert root["calls"] == 1 and root["input_tokens"] > 0
