"""The paper authors' library (``from rlm import RLM``) on the engine: its README and API
docs' snippets run with only the import line changed, against the scripted server.

Snippets are copied verbatim from alexzhang13/rlm (README.md, docs/api/rlm.md); each test
swaps ``from rlm`` for ``from rlm_engine.compat.rlm`` and nothing else, and points the
engine's OpenAI client at the server the way the README documents (``RLM_API_URL``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_engine.clients.configured import make_clients
from rlm_engine.compat.rlm import (
    RLM,
    RLMLogger,
    TimeoutExceededError,
    TokenLimitExceededError,
    UnsupportedOptionError,
)
from rlm_engine.scripted import ScriptedModel
from rlm_engine.scripted.model import Request
from rlm_engine.scripted.server import ScriptedServer

QUICKSTART = """
from rlm import RLM

rlm = RLM(
    backend="openai",
    backend_kwargs={"model_name": "gpt-5-nano"},
    verbose=True,  # For printing to console with rich, disabled by default.
)

print(rlm.completion("Print me the first 100 powers of two, each on a newline.").response)
"""

ROOT_PROMPT = """
from rlm import RLM

rlm = RLM(
    backend="openai",
    backend_kwargs={"model_name": "gpt-5-nano"},
)

# The context is the document, but the LM sees the question each iteration
result = rlm.completion(
    prompt=long_document,
    root_prompt="What is the main theme of this document?"
)
"""

LOGGER = """
from rlm.logger import RLMLogger
from rlm import RLM

# In-memory only (trajectory on result.metadata)
logger = RLMLogger()

# Also save to disk (JSONL for the visualizer)
logger = RLMLogger(log_dir="./logs")

rlm = RLM(backend="openai", backend_kwargs={"model_name": "gpt-5-nano"}, logger=logger)
result = rlm.completion("Calculate the factorial of 100 and return the number of digits.")
"""


def migrated(snippet: str) -> str:
    """The snippet with its import lines pointed at the compat package, nothing else."""
    out = re.sub(r"^from rlm(\.| )", r"from rlm_engine.compat.rlm\1", snippet, flags=re.M)
    assert out.count("rlm_engine.compat.rlm") == snippet.count("from rlm")
    return out


POWERS = "\n".join(str(2**i) for i in range(1, 101))

# What a capable root writes for the README's task: code that computes the answer in the
# REPL, and FINAL_VAR naming the variable that code made.
POWERS_REPLY = (
    "```repl\npowers = '\\n'.join(str(2**i) for i in range(1, 101))\nprint(len(powers))\n```\n"
    "FINAL_VAR(powers)"
)
FACTORIAL_REPLY = (
    "```repl\nimport math\ndigits = str(len(str(math.factorial(100))))\nprint(digits)\n```\n"
    "FINAL_VAR(digits)"
)


def _asks(text: str) -> Any:
    return lambda req: req.is_rlm_root and text in req.first_user


@pytest.fixture
def server(scripted_model: ScriptedModel) -> Iterator[ScriptedServer]:
    scripted_model.add_rule(_asks("powers of two"), POWERS_REPLY, name="powers")
    scripted_model.add_rule(_asks("factorial of 100"), FACTORIAL_REPLY, name="factorial")
    with ScriptedServer(scripted_model) as srv:
        yield srv


@pytest.fixture
def at_server(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> ScriptedServer:
    """The README's set-up for an OpenAI-compatible server: ``RLM_API_URL``."""
    monkeypatch.setenv("RLM_API_URL", server.base_url)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    return server


def test_readme_quickstart_runs_with_the_import_changed(
    at_server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    exec(migrated(QUICKSTART), {})
    out = capsys.readouterr().out
    assert POWERS in out  # .response printed: the REPL variable FINAL_VAR named
    assert at_server.model.rule_hits()["powers"] == 1
    # backend_kwargs' model_name is the model every request asked for
    assert {r.model for r in at_server.stats.completions()} == {"gpt-5-nano"}


def test_root_prompt_is_the_query_and_prompt_the_context(at_server: ScriptedServer) -> None:
    lines = [f"Paragraph {i}: the weather was mild." for i in range(2000)]
    lines[1000] = "The secret code is 4729."
    scope: dict[str, Any] = {"long_document": "\n".join(lines)}
    source = migrated(ROOT_PROMPT).replace(
        "What is the main theme of this document?", "What is the secret code?"
    )  # the one question the offline model can answer about this document
    exec(source, scope)
    result = scope["result"]
    assert result.response == "4729"
    assert result.prompt == scope["long_document"]
    assert result.root_model == "gpt-5-nano"
    assert result.execution_time > 0
    # usage per model, as their UsageSummary; equal to what the server counted
    usage = result.usage_summary.to_dict()["model_usage_summaries"]["gpt-5-nano"]
    assert usage["total_calls"] == len(at_server.stats.completions())
    assert (usage["total_input_tokens"], usage["total_output_tokens"]) == at_server.stats.tokens()
    assert result.result.query == "What is the secret code?"  # root_prompt is the query


def test_logger_snippet_keeps_the_trajectory_in_memory_and_on_disk(
    at_server: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    scope: dict[str, Any] = {}
    exec(migrated(LOGGER), scope)
    result, logger = scope["result"], scope["logger"]
    assert result.response == "158"  # the docs' documented answer
    trajectory = result.metadata
    assert trajectory == logger.get_trajectory()
    assert trajectory["run_metadata"]["config"]["root_model"] == "gpt-5-nano"
    assert len(trajectory["iterations"]) == logger.iteration_count == 1
    files = list((tmp_path / "logs").glob("rlm_*.jsonl"))
    assert [f.resolve() for f in files] == [Path(logger.log_file_path).resolve()]
    kinds = [json.loads(line)["type"] for line in files[0].read_text().splitlines()]
    assert kinds == ["metadata", "iteration", "result"]


def test_memory_only_logger_writes_nothing(at_server: ScriptedServer, tmp_path: Path) -> None:
    logger = RLMLogger()
    rlm = RLM(backend="openai", backend_kwargs={"model_name": "m"}, logger=logger)
    result = rlm.completion("Calculate the factorial of 100 and return the number of digits.")
    assert result.metadata is not None and result.metadata["result"]["status"] == "final"
    assert logger.log_file_path is None


def test_keywords_map_onto_engine_options(at_server: ScriptedServer) -> None:
    rlm = RLM(
        backend="openai",
        backend_kwargs={"model_name": "root-m", "sampling_args": {"temperature": 0.2}},
        other_backends=["openrouter"],
        other_backend_kwargs=[{"model_name": "sub-m", "api_key": "sk-or"}],
        environment="local",
        environment_kwargs={"setup_code": "x = 1", "timeout": 30.0},
        max_depth=2,
        max_iterations=7,
        max_budget=1.5,
        max_timeout=120.0,
        max_tokens=50_000,
        max_concurrent_subcalls=3,
        compaction=True,
        compaction_threshold_pct=0.7,
        custom_system_prompt='Set answer = {"content": ..., "ready": True} when done.',
    )
    cfg = rlm.engine.config
    assert (cfg["model"], cfg["temperature"]) == ("root-m", 0.2)
    assert (cfg["sub_backend"], cfg["sub_model"]) == ("openai", "sub-m")
    assert cfg["sub_backend_kwargs"]["base_url"] == "https://openrouter.ai/api/v1"
    assert (cfg["environment"], cfg["repl_setup"]) == ("local", "x = 1")
    assert cfg["environment_kwargs"] == {"timeout": 30.0}
    assert (cfg["max_depth"], cfg["max_iterations"]) == (2, 7)
    assert (cfg["max_cost"], cfg["run_timeout"], cfg["max_total_tokens"]) == (1.5, 120.0, 50_000)
    assert cfg["max_tokens"] == 8192  # their max_tokens is the run's, ours per reply: untouched
    assert (cfg["max_concurrency"], cfg["compaction_threshold"]) == (3, 0.7)
    root, sub = make_clients(cfg)
    assert sub is not root and getattr(sub, "base_url", None) == "https://openrouter.ai/api/v1"
    # the prompt is taken literally (braces included), the tools' doc still after it
    from rlm_engine.prompts import build_system_prompt

    text = build_system_prompt(can_recurse=True, template=cfg["system_prompt"])
    assert text.startswith('Set answer = {"content": ..., "ready": True} when done.')


def test_defaults_keep_the_engine_budgets_and_isolation() -> None:
    cfg = RLM(backend="scripted").engine.config
    assert cfg["environment"] == "auto"
    assert (cfg["max_cost"], cfg["max_total_tokens"], cfg["max_llm_calls"]) == (
        25.0,
        20_000_000,
        1000,
    )
    lifted = RLM(backend="scripted", max_budget=None, max_tokens=None).engine.config
    assert (lifted["max_cost"], lifted["max_total_tokens"]) == (None, None)


def test_custom_tools_functions_and_values_reach_the_repl(scripted_model: ScriptedModel) -> None:
    calls: list[str] = []

    def fetch_data(key: str) -> str:
        calls.append(key)
        return f"data-for-{key}"

    scripted_model.add_rule(
        lambda req: req.is_rlm_root and req.turn == 0,
        "```repl\nout = fetch_data(REGION) + '/' + str(LIMITS['n'])\n```\nFINAL_VAR(out)",
    )
    rlm = RLM(
        backend="scripted",
        backend_kwargs={"model": scripted_model},
        custom_tools={
            "fetch_data": {"tool": fetch_data, "description": "Fetch data from API"},
            "REGION": "eu",
            "LIMITS": {"n": 3},
        },
    )
    result = rlm.completion("Use the tools.")
    assert result.response == "data-for-eu/3"
    assert calls == ["eu"]
    assert "fetch_data(key: str)" in rlm.engine.config["tools_doc"]
    assert "Fetch data from API" in rlm.engine.config["tools_doc"]


def test_iteration_callbacks_fire(scripted_model: ScriptedModel) -> None:
    seen: list[tuple[Any, ...]] = []
    rlm = RLM(
        backend="scripted",
        backend_kwargs={"model": scripted_model},
        on_iteration_start=lambda d, i: seen.append(("start", d, i)),
        on_iteration_complete=lambda d, i, t: seen.append(("end", d, i, t >= 0)),
    )
    result = rlm.completion("The secret code is 4729.", root_prompt="What is the secret code?")
    assert result.response == "4729"
    n = len(result.result.iterations) if result.result else 0
    assert n >= 1
    assert seen[:2] == [("start", 0, 1), ("end", 0, 1, True)]
    assert len([s for s in seen if s[0] == "end"]) == n


def test_subcall_complete_fires_for_child_rlms(scripted_model: ScriptedModel) -> None:
    scripted_model.add_rule(
        lambda req: req.is_rlm_root and "Ask a child" in req.first_user,
        "```repl\nr = rlm_query('What is the secret code?', context='The secret code is 4729.')"
        "\n```\nFINAL_VAR(r)",
        times=1,
    )
    seen: list[tuple[Any, ...]] = []
    rlm = RLM(
        backend="scripted",
        backend_kwargs={"model": scripted_model, "model_name": "root-m"},
        max_depth=2,
        on_subcall_complete=lambda *args: seen.append(args),
    )
    assert rlm.completion("Ask a child.").response == "4729"
    assert [(d, m, err) for d, m, _, err in seen] == [(1, "root-m", None)]
    assert seen[0][2] > 0


PERSISTENT = """
with RLM(backend="scripted", backend_kwargs={"model": model}, persistent=True) as rlm:
    result1 = rlm.completion("First context")
    result2 = rlm.completion("Second context")  # Can access context_0 and context_1
"""


def test_persistent_keeps_one_repl_across_completions(scripted_model: ScriptedModel) -> None:
    """The API docs' persistent snippet (``...`` filled in): the second completion reads
    what the first made, and its own context arrives as ``context_1``."""
    scripted_model.add_rule(
        lambda req: req.is_rlm_root and "First context" in req.first_user,
        "```repl\nfirst = context.split()[0]\n```\nFINAL_VAR(first)",
        times=1,
    )
    scripted_model.add_rule(
        lambda req: req.is_rlm_root and "context_1" in req.first_user,
        "```repl\nboth = first + ' ' + context_1.split()[0]\n```\nFINAL_VAR(both)",
        times=1,
    )
    scope: dict[str, Any] = {"RLM": RLM, "model": scripted_model}
    exec(PERSISTENT, scope)
    assert scope["result1"].response == "First"
    assert scope["result2"].response == "First Second"
    assert scope["rlm"]._conversation is None  # closed on leaving the with block


def test_token_limit_raises_their_error(scripted_model: ScriptedModel) -> None:
    rlm = RLM(backend="scripted", backend_kwargs={"model": scripted_model}, max_tokens=10)
    with pytest.raises(TokenLimitExceededError) as info:
        rlm.completion("The secret code is 4729.", root_prompt="What is the secret code?")
    assert info.value.token_limit == 10 and info.value.tokens_used >= 10


def test_timeout_raises_their_error(scripted_model: ScriptedModel) -> None:
    slow = "```repl\nimport time\ntime.sleep(5)\n```"
    scripted_model.add_rule(lambda req: req.is_rlm_root, slow)
    rlm = RLM(backend="scripted", backend_kwargs={"model": scripted_model}, max_timeout=0.5)
    with pytest.raises(TimeoutExceededError) as info:
        rlm.completion("Some context.", root_prompt="Wait.")
    assert info.value.timeout == 0.5 and info.value.elapsed >= 0.5


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"depth": 1}, "max_depth"),
        ({"environment": "ipython"}, "environment='local'"),
        ({"backend": "portkey"}, "backend='openai'"),
        ({"backend": "azure_openai"}, "backend='openai'"),
        ({"user_prologue": "Tips"}, "root_prompt="),
        ({"orchestrator": False}, "custom_system_prompt"),
        ({"custom_tools": {"f": len}, "custom_sub_tools": {}}, "leave custom_sub_tools out"),
        ({"sub_sampling_args": {"top_p": 0.5}}, "other_backend_kwargs"),
        (
            {"other_backends": ["openai", "anthropic"], "other_backend_kwargs": [{}, {}]},
            "llm_query(prompt, model=...)",
        ),
    ],
)
def test_knobs_without_an_equivalent_say_what_to_use(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(UnsupportedOptionError) as info:
        RLM(backend=kwargs.pop("backend", "scripted"), **kwargs)
    assert "has no equivalent here" in str(info.value)
    assert says in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "error", "says"),
    [
        ({"max_iteratons": 3}, TypeError, "did you mean 'max_iterations'"),
        ({"backend": "vllm", "backend_kwargs": {"model_name": "m"}}, ValueError, "base_url"),
        ({"backend": "nope"}, ValueError, "Unknown backend 'nope'"),
        ({"environment": "daytona"}, ValueError, "Unknown environment 'daytona'"),
        ({"environment_kwargs": {"image_name": "x"}}, TypeError, "image_name"),
        ({"custom_tools": {"llm_query": len}}, ValueError, "Reserved names"),
        ({"custom_tools": {"obj": object()}}, TypeError, "cannot be copied"),
        ({"max_tokens": 5, "max_total_tokens": 5}, TypeError, "given twice"),
        (
            {"other_backends": ["openai"], "other_backend_kwargs": [{"base_url": "http://x"}]},
            ValueError,
            "model_name",
        ),
    ],
)
def test_bad_keywords_are_clear_errors(
    kwargs: dict[str, Any], error: type[Exception], says: str
) -> None:
    with pytest.raises(error) as info:
        rlm = RLM(backend=kwargs.pop("backend", "scripted"), **kwargs)
        make_clients(rlm.engine.config)
    assert says in str(info.value)


def test_the_seed_import_paths_exist() -> None:
    """``rlm.core.rlm``, ``rlm.core.types`` and ``rlm.logger`` have their mirrors."""
    from rlm_engine.compat.rlm.core.rlm import RLM as CoreRLM
    from rlm_engine.compat.rlm.core.types import RLMChatCompletion, UsageSummary
    from rlm_engine.compat.rlm.logger import RLMLogger as LoggerModule

    assert CoreRLM is RLM and LoggerModule is RLMLogger
    assert RLMChatCompletion.__dataclass_fields__["response"] and UsageSummary


def test_logger_file_name_has_no_equivalent() -> None:
    with pytest.raises(ValueError, match="log_dir"):
        RLMLogger(file_name="custom")


def test_request_shape_reaches_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """sampling_args reach the request body as the seed library sends them."""
    seen: list[dict[str, Any]] = []

    def capture(req: Request) -> bool:
        seen.append(req.raw)
        return False

    model = ScriptedModel()
    model.add_rule(capture, "unused")
    model.add_rule(_asks("factorial of 100"), FACTORIAL_REPLY)
    with ScriptedServer(model) as srv:
        monkeypatch.setenv("RLM_API_URL", srv.base_url)
        result = RLM(
            backend="openai",
            backend_kwargs={"model_name": "gpt-5-nano"},
            sampling_args={"temperature": 0.3, "seed": 7},
        ).completion("Calculate the factorial of 100 and return the number of digits.")
    assert result.response == "158"
    assert seen and all(r.get("temperature") == 0.3 and r.get("seed") == 7 for r in seen)


def test_the_seeds_exceptions_module_path_migrates_with_the_same_one_word_change() -> None:
    """``from rlm.utils.exceptions import ...`` is how the seed's docs catch limit errors;
    the mirrored path gives the classes the compat RLM raises."""
    import rlm_engine.compat.rlm as compat
    from rlm_engine.compat.rlm.utils.exceptions import (
        BudgetExceededError,
        CancellationError,
        ContextWindowExceededError,
        ErrorThresholdExceededError,
        TimeoutExceededError,
        TokenLimitExceededError,
    )

    assert BudgetExceededError is compat.BudgetExceededError
    assert TimeoutExceededError is compat.TimeoutExceededError
    assert TokenLimitExceededError is compat.TokenLimitExceededError
    assert ErrorThresholdExceededError is compat.ErrorThresholdExceededError
    assert CancellationError is compat.CancellationError
    err = ContextWindowExceededError("m", 10, 5, "root", "chars/4")
    assert err.context_limit == 5 and "past 5" in str(err)
