"""The seed library's ``max_errors`` and ``on_subcall_start`` on the engine, and its API
docs' "Example: Full Configuration" snippet run verbatim but for the import lines.

The snippet is copied from alexzhang13/rlm ``docs/api/rlm.md``; its root is Anthropic and
its sub-calls OpenAI, both pointed at one scripted server through their SDKs' standard
variables (``ANTHROPIC_BASE_URL``, ``RLM_API_URL``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_engine.compat.rlm import RLM, ErrorThresholdExceededError
from rlm_engine.scripted import ScriptedModel
from rlm_engine.scripted.model import Request
from rlm_engine.scripted.server import ScriptedServer
from tests.test_compat_rlm import migrated

FULL_CONFIGURATION = """
import os
from rlm import RLM
from rlm.logger import RLMLogger

logger = RLMLogger(log_dir="./logs")

rlm = RLM(
    # Primary model
    backend="anthropic",
    backend_kwargs={
        "api_key": os.getenv("ANTHROPIC_API_KEY"),
        "model_name": "claude-sonnet-4-20250514",
    },

    # Execution environment
    environment="local",

    # Additional model for sub-calls (routed at depth > 0)
    other_backends=["openai"],
    other_backend_kwargs=[{
        "api_key": os.getenv("OPENAI_API_KEY"),
        "model_name": "gpt-4o-mini",
    }],

    # Recursion: allow one level of child RLMs via rlm_query()
    max_depth=2,
    max_iterations=40,

    # Limits
    max_timeout=120.0,
    max_budget=1.0,
    max_errors=5,

    # Custom tools available in the REPL
    custom_tools={
        "fetch_data": {"tool": my_fetch_fn, "description": "Fetch data from API"},
    },

    # Compaction for long conversations
    compaction=True,
    compaction_threshold_pct=0.85,

    # Debugging
    logger=logger,
    verbose=True,
)

result = rlm.completion(
    prompt=massive_document,
    root_prompt="Summarize the key findings",
)

print(result.response)
print(result.metadata)  # Full trajectory (iterations, sub-calls, etc.)
"""

ROOT = "claude-sonnet-4-20250514"
SUB = "gpt-4o-mini"
DOCUMENT = "\n".join(f"Section {i}: revenue grew {i}% in region {i % 7}." for i in range(3000))


def _root(req: Request) -> bool:
    return req.is_rlm_root and req.model == ROOT


def _child(req: Request) -> bool:
    return req.is_rlm_root and req.model == SUB


@pytest.fixture
def both_sdks(
    scripted_model: ScriptedModel, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[ScriptedServer]:
    """One scripted server behind the Anthropic root and the OpenAI sub-calls."""
    with ScriptedServer(scripted_model) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-real")
        monkeypatch.setenv("RLM_API_URL", srv.base_url)
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
        monkeypatch.chdir(tmp_path)
        yield srv


def _run_snippet(fetched: list[str]) -> dict[str, Any]:
    def my_fetch_fn(key: str) -> str:
        fetched.append(key)
        return "Q3 findings: revenue up 12%, churn down 3%."

    scope: dict[str, Any] = {"my_fetch_fn": my_fetch_fn, "massive_document": DOCUMENT}
    exec(migrated(FULL_CONFIGURATION), scope)
    return scope


def test_full_configuration_snippet_runs(both_sdks: ScriptedServer, tmp_path: Path) -> None:
    model = both_sdks.model
    model.add_rule(
        _root,
        "```repl\ndata = fetch_data('q3')\nsummary = rlm_query('Summarize: ' + data)\n```\n"
        "FINAL_VAR(summary)",
        name="root",
    )
    model.add_rule(_child, "FINAL(Revenue up 12%; churn down 3%.)", name="child")
    fetched: list[str] = []
    scope = _run_snippet(fetched)
    result = scope["result"]
    assert result.response == "Revenue up 12%; churn down 3%."
    assert fetched == ["q3"]
    assert model.rule_hits() == {"root": 1, "child": 1}
    # the root went through the Messages API, the child RLM through chat completions
    assert both_sdks.stats.by_path.get("/v1/messages") == 1
    assert both_sdks.stats.by_path.get("/v1/chat/completions") == 1
    assert result.root_model == ROOT
    assert result.metadata["run_metadata"]["config"]["root_model"] == ROOT
    assert list((tmp_path / "logs").glob("rlm_*.jsonl"))
    assert scope["rlm"].engine.config["max_errors"] == 5


def test_full_configuration_stops_after_five_failing_turns(both_sdks: ScriptedServer) -> None:
    both_sdks.model.add_rule(
        _root, "```repl\nanswer = 'draft'\ndata = fetch_data(missing_name)\n```", name="root"
    )
    with pytest.raises(ErrorThresholdExceededError) as info:
        _run_snippet([])
    err = info.value
    assert (err.error_count, err.threshold) == (5, 5)
    assert err.last_error is not None and "NameError" in err.last_error
    assert err.partial_answer == "draft"
    assert both_sdks.model.rule_hits() == {"root": 5}  # 40 turns allowed, 5 paid


def test_on_subcall_start_gets_depth_model_and_prompt_preview(
    scripted_model: ScriptedModel,
) -> None:
    prompt = "What is the secret code? " + "x" * 200
    scripted_model.add_rule(
        lambda req: req.is_rlm_root and "Ask a child" in req.first_user,
        f"```repl\nr = rlm_query({prompt!r}, context='The secret code is 4729.')\n```\n"
        "FINAL_VAR(r)",
        times=1,
    )
    seen: list[tuple[Any, ...]] = []
    rlm = RLM(
        backend="scripted",
        backend_kwargs={"model": scripted_model, "model_name": "root-m"},
        max_depth=2,
        on_subcall_start=lambda *args: seen.append(("start", *args)),
        on_subcall_complete=lambda d, m, t, e: seen.append(("end", d, m, e)),
    )
    assert rlm.completion("Ask a child.").response == "4729"
    assert seen == [("start", 1, "root-m", prompt[:80]), ("end", 1, "root-m", None)]


def test_subcall_callbacks_are_for_child_rlms_only(scripted_model: ScriptedModel) -> None:
    """At the depth limit rlm_query is a plain LM call: the seed library fires neither."""
    scripted_model.add_rule(
        lambda req: req.is_rlm_root,
        "```repl\nr = rlm_query('Say hi') + llm_query('Say hi')\n```\nFINAL(done)",
        times=1,
    )
    seen: list[Any] = []
    rlm = RLM(
        backend="scripted",
        backend_kwargs={"model": scripted_model},
        on_subcall_start=lambda *a: seen.append(a),
        on_subcall_complete=lambda *a: seen.append(a),
    )
    result = rlm.completion("Anything.")
    assert result.response == "done"
    assert (
        result.result is not None and len(result.result.iterations[0].code_blocks[0].subcalls) == 2
    )
    assert seen == []


def test_a_failing_callback_does_not_break_the_run(scripted_model: ScriptedModel) -> None:
    scripted_model.add_rule(
        lambda req: req.is_rlm_root and "Ask a child" in req.first_user,
        "```repl\nr = rlm_query('What is the secret code?', context='The secret code is 4729.')"
        "\n```\nFINAL_VAR(r)",
        times=1,
    )

    def boom(*args: Any) -> None:
        raise RuntimeError("callback bug")

    rlm = RLM(
        backend="scripted",
        backend_kwargs={"model": scripted_model},
        max_depth=2,
        on_subcall_start=boom,
    )
    assert rlm.completion("Ask a child.").response == "4729"
