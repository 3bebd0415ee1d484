"""The minimal ``rlm_repl`` library (``from rlm.rlm_repl import RLM_REPL``) on the engine.

Its README's two usage snippets (fullstackwebdev/rlm_repl, README.md "Usage") run with only
the import line changed, against the scripted server reached through ``RLM_API_URL`` as
that README documents; the results are checked against what it documents (an answer
string, or None when the iterations run out; ``cost_summary()`` with its keys).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from rlm_engine.clients.configured import make_clients
from rlm_engine.clients.openai import OpenAIClient
from rlm_engine.compat.rlm.rlm_repl import RLM_REPL
from rlm_engine.scripted import ScriptedModel
from rlm_engine.scripted.server import ScriptedServer

BASIC = """
from rlm.rlm_repl import RLM_REPL

# Create RLM instance
rlm = RLM_REPL(
    model="auto",  # Automatically selects first available model
    recursive_model="auto",  # Automatically selects first available model
    max_iterations=10
)

# Process long context
result = rlm.completion(
    context="Very long context...",
    query="What is the answer to the question?"
)

# Get cost summary
costs = rlm.cost_summary()
print(f"Total cost: ${costs['total_cost']:.4f}")
"""

SPECIFIC_MODEL = """
from rlm.rlm_repl import RLM_REPL

# Create RLM instance with specific model
rlm = RLM_REPL(
    model="Qwen3-Coder-REAP-25B-A3B.Q5_K_M.gguf",
    recursive_model="Qwen3-Coder-REAP-25B-A3B.Q5_K_M.gguf",
    max_iterations=10,
    max_output_length=500000  # Characters before truncation
)

# Process long context
result = rlm.completion(
    context="Very long context...",
    query="What is the answer to the question?"
)

# Note: result may be None if max_iterations reached without finding final answer
if result is None:
    print("RLM reached max iterations without finding a final answer")
else:
    print(f"Result: {result}")
"""

COST_KEYS = {
    "total_cost",
    "root_llm_cost",
    "sub_llm_cost",
    "root_llm_tokens",
    "sub_llm_tokens",
    "root_llm_calls",
    "sub_llm_calls",
}

NEEDLE_DOC = "\n".join(
    "The magic number is 1298418." if i == 1500 else f"Line {i}: blah random text data."
    for i in range(3000)
)


def migrated(snippet: str) -> str:
    out = snippet.replace("from rlm.rlm_repl import", "from rlm_engine.compat.rlm.rlm_repl import")
    assert out != snippet
    return out


@pytest.fixture
def server(scripted_model: ScriptedModel) -> Iterator[ScriptedServer]:
    # A local server lists its models; "auto" must take the first.
    with ScriptedServer(scripted_model, models=["local-q4.gguf", "other.gguf"]) as srv:
        yield srv


@pytest.fixture
def at_server(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> ScriptedServer:
    monkeypatch.setenv("RLM_API_URL", server.base_url)
    return server


def _run(snippet: str) -> dict[str, Any]:
    scope: dict[str, Any] = {}
    exec(migrated(snippet), scope)
    return scope


def test_basic_usage_runs_with_the_import_changed(
    at_server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    scope = _run(BASIC)
    assert isinstance(scope["result"], str) and scope["result"]
    costs = scope["costs"]
    assert set(costs) >= COST_KEYS
    assert re.search(r"^Total cost: \$\d+\.\d{4}$", capsys.readouterr().out, re.M)
    # "auto": the first model the server lists at /models, for root and sub-calls alike
    assert {r.model for r in at_server.stats.completions()} == {"local-q4.gguf"}
    assert at_server.stats.by_path.get("/v1/models", 0) >= 1
    calls = len(at_server.stats.completions())
    assert costs["root_llm_calls"] + costs["sub_llm_calls"] == calls
    assert costs["root_llm_tokens"] + costs["sub_llm_tokens"] == sum(at_server.stats.tokens())


def test_specific_model_snippet_sends_that_model(
    at_server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    scope = _run(SPECIFIC_MODEL)
    out = capsys.readouterr().out
    assert f"Result: {scope['result']}" in out
    assert {r.model for r in at_server.stats.completions()} == {
        "Qwen3-Coder-REAP-25B-A3B.Q5_K_M.gguf"
    }
    assert scope["rlm"].engine.config["max_output_chars"] == 500000


def test_answers_and_counts_root_and_sub_calls_apart(
    scripted_model: ScriptedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ScriptedServer(scripted_model, models=["root-m", "sub-m"]) as srv:
        monkeypatch.setenv("RLM_API_URL", srv.base_url)
        rlm = RLM_REPL(model="root-m", recursive_model="sub-m", max_iterations=10)
        answer = rlm.completion(context=NEEDLE_DOC, query="What is the magic number?")
        assert answer == "1298418"
        costs = rlm.cost_summary()
        root_in, root_out = srv.stats.tokens("root-m")
        sub_in, sub_out = srv.stats.tokens("sub-m")
        assert costs["root_llm_calls"] == len(srv.stats.completions("root-m")) > 0
        assert costs["sub_llm_calls"] == len(srv.stats.completions("sub-m")) > 0
        assert costs["root_llm_tokens"] == root_in + root_out
        assert costs["sub_llm_tokens"] == sub_in + sub_out
        assert costs["total_cost"] == 0.0 and costs["cost_known"] is False  # unpriced models
        # counts add up over completions until reset()
        rlm.completion(context=NEEDLE_DOC, query="What is the magic number?")
        assert rlm.cost_summary()["root_llm_calls"] == 2 * costs["root_llm_calls"]
        rlm.reset()
        assert rlm.cost_summary() == {**dict.fromkeys(COST_KEYS, 0), "cost_known": True}


def test_none_when_iterations_run_out_and_no_extra_answer_is_asked(
    scripted_model: ScriptedModel, at_server: ScriptedServer
) -> None:
    scripted_model.add_rule(lambda req: req.is_rlm_root, "```repl\nprint(len(context))\n```")
    rlm = RLM_REPL(model="auto", recursive_model="auto", max_iterations=3)
    assert rlm.completion(context="Some text.", query="What is it?") is None
    assert len(at_server.stats.completions()) == 3  # one per iteration, nothing more
    assert rlm.cost_summary()["root_llm_calls"] == 3


def test_default_server_is_local_even_with_an_openai_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed sends every request to RLM_API_URL or localhost:8080, never to OpenAI."""
    monkeypatch.delenv("RLM_API_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    rlm = RLM_REPL(model="auto", recursive_model="auto")
    root, sub = make_clients(rlm.engine.config)
    assert isinstance(root, OpenAIClient) and isinstance(sub, OpenAIClient)
    assert root.base_url == sub.base_url == "http://localhost:8080/v1"


def test_engine_options_are_accepted_by_name(at_server: ScriptedServer) -> None:
    rlm = RLM_REPL(model="auto", recursive_model="auto", environment="local", run_timeout=60)
    cfg = rlm.engine.config
    assert (cfg["environment"], cfg["run_timeout"], cfg["max_iterations"]) == ("local", 60, 20)
    assert cfg["verbose"] is False
    # alexzhang13/rlm-minimal's main.py spells the console log enable_logging=True
    assert RLM_REPL(model="gpt-5", enable_logging=True).engine.config["verbose"] is True


@pytest.mark.parametrize(
    ("kwargs", "error", "says"),
    [
        ({"depth": 1}, ValueError, "max_depth=2"),
        ({"base_url": "http://x/v1"}, TypeError, "RLM_API_URL"),
        ({"backend": "anthropic"}, TypeError, "rlm_engine.RLM"),
        ({"log_to_file": True}, TypeError, "unknown option"),
        ({"max_output_lenght": 10}, TypeError, "unknown option"),
        ({"max_output_length": 0}, ValueError, "max_output_chars"),
    ],
)
def test_unsupported_keywords_are_clear_errors(
    kwargs: dict[str, Any], error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=re.escape(says)):
        RLM_REPL(**kwargs)
