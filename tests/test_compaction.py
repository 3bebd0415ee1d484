"""Window-aware root history, against the real HTTP scripted server with a context window.

The server answers prompts past its window with the provider's own 400 context-length
error (OpenAI and Anthropic wording). A 40-iteration run whose history is far larger than
the window must end with the right answer, and never send a prompt the server rejects
when the window is known; when the estimate is wrong, the provider's error triggers a
compaction and a retry instead of a failed run.
"""

from __future__ import annotations

from typing import Any

import pytest

from rlm_engine import RLM
from rlm_engine.compaction import COMPACTION_REQUEST, HISTORY_VARIABLE
from rlm_engine.scripted import ScriptedModel, ScriptedServer

ITERATIONS = 40
WINDOW = 6_000  # tokens the server accepts (4 characters per token)


def script_long_run(model: ScriptedModel) -> None:
    model.add_rule(
        lambda r: r.is_rlm_root and COMPACTION_REQUEST in r.last_user,
        lambda r: "Progress: `total` holds the running sum; keep adding i for each step.",
    )
    steps = [
        f"```repl\ntotal = globals().get('total', 0) + {i}\nprint('step {i}:', 'x' * 1500)\n```"
        for i in range(1, ITERATIONS + 1)
    ]
    model.add_rule(lambda r: r.is_rlm_root, [*steps, "FINAL_VAR(total)"])


def rlm_for(server: ScriptedServer, backend: str, **options: Any) -> RLM:
    base_url = server.base_url if backend == "openai" else server.url
    return RLM(
        backend=backend,
        model="scripted-root",
        base_url=base_url,
        api_key="sk-test",
        environment="local",
        max_iterations=ITERATIONS + 5,
        max_retries=0,
        **options,
    )


def rejected(server: ScriptedServer) -> int:
    return sum(1 for r in server.stats.log if r.fault == "context_length")


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_long_run_fits_a_known_window(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer, backend: str
) -> None:
    script_long_run(scripted_model)
    scripted_server.context_window = WINDOW
    events: list[dict[str, Any]] = []
    res = rlm_for(scripted_server, backend, root_context_window=WINDOW).completion(
        "some context", "Sum the steps.", on_event=events.append
    )
    assert res.status == "final", res.error
    assert res.response == str(sum(range(1, ITERATIONS + 1)))
    assert rejected(scripted_server) == 0  # never sent a prompt past the window
    assert [e for e in events if e["event"] == "compaction"]
    assert len(res.iterations) == ITERATIONS + 1  # the transcript keeps every iteration


def test_a_provider_context_error_compacts_and_retries(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    script_long_run(scripted_model)
    scripted_server.context_window = WINDOW
    # The configured window is wrong (far too large): only the provider's error can tell.
    rlm = rlm_for(scripted_server, "openai", root_context_window=1_000_000)
    res = rlm.completion("some context", "Sum the steps.")
    assert res.status == "final", res.error
    assert res.response == str(sum(range(1, ITERATIONS + 1)))
    assert rejected(scripted_server) >= 1


def test_compacted_iterations_stay_readable_in_the_repl(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    script_long_run(scripted_model)
    res = rlm_for(scripted_server, "openai", root_context_window=WINDOW).completion(
        "some context", "Sum the steps."
    )
    assert res.status == "final"
    # Later prompts carry the summary, not the folded iterations.
    last_prompt = scripted_server.stats.log[-1]
    assert last_prompt.prompt_tokens < WINDOW
    # ...and the folded iterations are a REPL list that code can read.
    scripted_model.add_rule(
        lambda r: r.is_rlm_root and "How many" in r.first_user,
        [f"```repl\nprint(len({HISTORY_VARIABLE}))\n```", "FINAL(done)"],
    )


def test_no_compaction_while_the_history_fits(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    scripted_model.add_rule(lambda r: r.is_rlm_root, ["```repl\nx = 2\n```", "FINAL_VAR(x)"])
    events: list[dict[str, Any]] = []
    res = rlm_for(scripted_server, "openai").completion("c", "q?", on_event=events.append)
    assert res.response == "2"
    assert not [e for e in events if e["event"] == "compaction"]
    assert not any(COMPACTION_REQUEST in (r.last_user or "") for r in scripted_server.stats.log)


def test_a_root_that_builds_its_own_prompt_is_never_compacted(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    """DSPy's predictor root formats its own prompt; a summary request would be a wasted
    root call answered with code."""
    from rlm_engine.clients.configured import make_clients

    script_long_run(scripted_model)
    rlm = rlm_for(scripted_server, "openai", root_context_window=WINDOW)
    root, _ = make_clients(rlm.config)
    root.builds_own_prompt = True  # type: ignore[misc]
    events: list[dict[str, Any]] = []
    res = RLM(rlm.config.replace(backend=root)).completion(
        "some context", "Sum the steps.", on_event=events.append
    )
    assert res.status == "final"
    assert not [e for e in events if e["event"] == "compaction"]


def test_a_sub_call_past_the_sub_models_window_says_what_fits(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    """Certainly too long for a known window: no call; refused by the provider: its window
    in the REPL's error text. Either way the run goes on."""
    scripted_model.add_rule(
        lambda r: r.is_rlm_root,
        [
            "```repl\nbig = llm_query('x' * 900_000, model='gpt-4o')\nprint(big)\n```",
            "```repl\nmid = llm_query('word ' * 2_000)\nprint(mid)\n```",
            "FINAL(done)",
        ],
    )
    scripted_server.context_window = 1_000  # tokens; the root's prompts stay under it
    res = rlm_for(scripted_server, "openai").completion("c", "Try big prompts.")
    assert res.status == "final"
    first = res.iterations[0].code_blocks[0]
    assert "no call was made" in first.stdout and "characters fit in one call" in first.stdout
    assert not any(r.model == "gpt-4o" for r in scripted_server.stats.log)
    second = res.iterations[1].code_blocks[0]
    assert "longer than the model's context window (1,000 tokens)" in second.stdout
    assert "about 3,150 characters fit" in second.stdout
