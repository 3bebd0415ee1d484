"""One configuration, every entry point: each option is reachable from ``RLM``,
``build_rlm_graph``, ``RLMChatModel``, ``RLMModule`` and ``rlm run`` with the same default,
or is documented there as set another way.

A new option added to ``rlm_engine.config`` without a sample value here fails
``test_every_option_has_a_sample``; one that an entry point cannot reach (and does not
document) fails ``test_every_option_reaches_every_entry_point``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dspy
import pydantic
import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from opentelemetry.sdk.trace import TracerProvider

from rlm_engine import RLM
from rlm_engine.cli import build_parser, run_config
from rlm_engine.cli_options import IDIOMS, NOT_FLAGS, flag, options_from_args
from rlm_engine.clients.configured import client_kwargs, make_clients
from rlm_engine.config import (
    GROUPS,
    OPTION_GROUP,
    RLMConfig,
    RunLimits,
    options,
)
from rlm_engine.environments import HostFunction
from rlm_engine.logger import RLMLogger
from rlm_integrations.dspy import RLMModule
from rlm_integrations.dspy.module import NOT_OPTIONS
from rlm_integrations.langchain import RLMChatModel
from rlm_integrations.langchain.options import DECLARED, NOT_FIELDS, generated_options
from rlm_integrations.langgraph import build_rlm_graph


async def _tool() -> str:
    return "ok"


def _on_event(event: dict[str, Any]) -> None:
    pass


FAKE_LLM = FakeListChatModel(responses=["x"])
TRACER_PROVIDER = TracerProvider()  # an OpenTelemetry SDK provider (otel extra)


def samples(tmp_path: Path) -> dict[str, Any]:
    """A valid non-default value for every option."""
    return {
        "backend": "anthropic",
        "model": "m-root",
        "sub_backend": "scripted",
        "sub_model": "m-sub",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key": "sk-test-key",
        "temperature": 0.3,
        "backend_kwargs": {"pricing": [1, 2]},
        "sub_backend_kwargs": {"pricing": [3, 4]},
        "system_as_user": True,
        "max_tokens": 123,
        "timeout": 7.5,
        "max_retries": 5,
        "max_iterations": 7,
        "max_depth": 2,
        "max_concurrency": 3,
        "max_llm_calls": 11,
        "max_total_tokens": 999,
        "max_cost": 0.5,
        "run_timeout": 60.0,
        "max_errors": 3,
        "final_answer_on_max_iterations": False,
        "mode": "auto",
        "direct_threshold": 0.5,
        "direct_threshold_tokens": 5_000,
        "environment": "subprocess",
        "environment_kwargs": {"timeout": 9},
        "max_output_chars": 1234,
        "repl_setup": "x = 1\n",
        "system_prompt": "You are an RLM.\n",
        "tools": {"t": HostFunction("t", _tool, "a tool")},
        "tools_doc": "- t(): a tool",
        "finish_hint": "call DONE(answer) in your code",
        "root_context_window": 50_000,
        "compaction_threshold": 0.5,
        "keep_last_iterations": 4,
        "prompt_caching": False,
        "logger": RLMLogger(tmp_path / "logs"),
        "verbose": True,
        "on_event": _on_event,
        "tracer_provider": TRACER_PROVIDER,
    }


# -- how each entry point takes one option ------------------------------------------------
def via_rlm(name: str, value: Any, tmp_path: Path) -> RLMConfig:
    return RLM(**{name: value}).config


def via_graph(name: str, value: Any, tmp_path: Path) -> RLMConfig:
    graph = build_rlm_graph(**{name: value})
    assert graph.rlm_config is not None
    return graph.rlm_config


#: RLMChatModel spells these options its own way (rlm_integrations.langchain.options).
CHAT_IDIOMS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "backend": lambda v: {"backend": v},
    "model": lambda v: {"model": v},
    "sub_backend": lambda v: {"sub_llm": FAKE_LLM},
    "base_url": lambda v: {"openai_api_base": v},
    "api_key": lambda v: {"api_key": v},
    "max_tokens": lambda v: {"max_completion_tokens": v},
    "timeout": lambda v: {"request_timeout": v},
    "verbose": lambda v: {"verbose": v},
}
CHAT_VALUES = {"sub_backend": FAKE_LLM}


def via_chat(name: str, value: Any, tmp_path: Path) -> RLMConfig:
    kwargs = CHAT_IDIOMS[name](value) if name in CHAT_IDIOMS else {name: value}
    return RLMChatModel(**kwargs).engine_config()


def via_dspy(name: str, value: Any, tmp_path: Path) -> RLMConfig:
    if name == "tools":  # DSPy's tools= takes functions / dspy.Tool; host functions: config
        return RLMModule("question -> answer", RLMConfig(tools=value)).config
    return RLMModule("question -> answer", **{name: value}).config


def via_cli(name: str, value: Any, tmp_path: Path, monkeypatch: Any = None) -> RLMConfig:
    argv = ["run", "-c", "ctx.txt"]
    if name in IDIOMS:
        flags = IDIOMS[name][0]
        if name in ("backend_kwargs", "sub_backend_kwargs", "environment_kwargs"):
            argv += [x for k, v in value.items() for x in (flags[0], f"{k}={v}")]
        elif name in ("repl_setup", "system_prompt"):
            path = tmp_path / f"{name}.txt"
            path.write_text(value)
            argv += [flags[0], str(path)]
        elif name == "api_key":
            monkeypatch.setenv("RLM_TEST_KEY", value)
            argv += [flags[0], "RLM_TEST_KEY"]
        elif name == "logger":
            argv += [flags[0], str(value.log_dir)]
        else:
            argv += [flags[0], str(value)]
    elif isinstance(value, bool):
        argv.append(flag(name) if value else "--no-" + flag(name)[2:])
    else:
        argv += [flag(name), str(value)]
    args = build_parser().parse_args(argv)
    args.options = options_from_args(args)
    backend = args.backend or "openai"
    return run_config(args, backend)


ENTRY_POINTS = {
    "RLM": (via_rlm, {}),
    "build_rlm_graph": (via_graph, {}),
    "RLMChatModel": (via_chat, NOT_FIELDS),
    "RLMModule": (via_dspy, NOT_OPTIONS),
    "rlm run": (via_cli, NOT_FLAGS),
}


def _same(name: str, got: Any, want: Any) -> bool:
    if name == "logger":  # the CLI makes its own logger for --log-dir
        return isinstance(got, RLMLogger) and Path(got.log_dir) == Path(want.log_dir)
    return got == want or got is want


# -- the tests -----------------------------------------------------------------------------
def test_every_option_has_a_sample(tmp_path: Path) -> None:
    assert set(samples(tmp_path)) == set(OPTION_GROUP), (
        "add a sample value for each new option, then make every entry point reach it"
    )


def test_groups_hold_disjoint_options() -> None:
    seen: list[str] = []
    for cls in GROUPS.values():
        seen += [f.name for f in dataclasses.fields(cls)]
    assert len(seen) == len(set(seen)) == len(OPTION_GROUP)


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_every_option_reaches_every_entry_point(
    entry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build, not_here = ENTRY_POINTS[entry]
    assert set(not_here) <= set(OPTION_GROUP), f"{entry} documents options that do not exist"
    assert all(reason.strip() for reason in not_here.values())
    for name, value in samples(tmp_path).items():
        if name in not_here:
            continue
        if entry == "RLMChatModel":
            value = CHAT_VALUES.get(name, value)
        if entry == "rlm run":
            config = via_cli(name, value, tmp_path, monkeypatch)
        else:
            config = build(name, value, tmp_path)
        assert _same(name, config[name], value), f"{entry}: {name}={value!r} got {config[name]!r}"
        # ...and nothing else moved.
        others = {k: v for k, v in config.to_options().items() if k not in (name, "backend")}
        defaults = {k: v for k, v in RLMConfig().to_options().items() if k in others}
        if entry == "RLMChatModel" and name == "sub_backend":
            others.pop("sub_backend", None)
        assert others == defaults, f"{entry}: setting {name} changed other options"


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_defaults_are_the_configs(
    entry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    build, not_here = ENTRY_POINTS[entry]
    if entry == "rlm run":
        args = build_parser().parse_args(["run", "-c", "ctx.txt"])
        args.options = options_from_args(args)
        config = run_config(args, "openai")
    elif entry == "RLMChatModel":
        config = RLMChatModel().engine_config()
    elif entry == "RLMModule":
        config = RLMModule("question -> answer").config
    else:
        config = build("max_iterations", RunLimits().max_iterations, tmp_path)
    want = RLMConfig().to_options()
    got = config.to_options()
    for name in OPTION_GROUP:
        if name not in not_here:
            assert got[name] == want[name], f"{entry}: default of {name} is {got[name]!r}"


def test_chat_model_fields_are_generated_with_the_engine_docs() -> None:
    fields = RLMChatModel.model_fields
    infos = options()
    for name in generated_options():
        assert fields[name].description == infos[name].doc
        assert fields[name].default == infos[name].default or fields[name].default_factory
    for name in DECLARED:
        assert name in OPTION_GROUP


@pytest.mark.parametrize(
    "make",
    [
        lambda: RLM(max_iteration=3),
        lambda: build_rlm_graph(max_iteration=3),
        lambda: RLMModule("q -> a", max_iteration=3),
        lambda: RLMConfig(max_iteration=3),
    ],
    ids=["RLM", "graph", "RLMModule", "RLMConfig"],
)
def test_unknown_options_fail_with_the_closest_name(make: Callable[[], Any]) -> None:
    with pytest.raises(TypeError, match="did you mean 'max_iterations'"):
        make()


def test_chat_model_rejects_unknown_fields() -> None:
    # A typo in an engine option must not silently fall back to the default.
    with pytest.raises(pydantic.ValidationError, match="max_iteration"):
        RLMChatModel(max_iteration=3)


def test_a_ready_config_and_options_together() -> None:
    base = RLMConfig(max_iterations=5, environment="subprocess")
    assert RLM(base, max_depth=2).config == base.replace(max_depth=2)
    assert build_rlm_graph(base).rlm_config == base
    assert RLMModule("q -> a", base).config == base
    chat = RLMChatModel(rlm_config=base, max_cost=1.0).engine_config()
    assert chat.run.max_iterations == 5 and chat.run.max_cost == 1.0
    assert chat.repl.environment == "subprocess"  # an unset chat field keeps the config's


def test_one_vocabulary_per_reply_and_whole_run() -> None:
    config = RLMConfig(max_tokens=100, timeout=5, max_total_tokens=10_000, run_timeout=60)
    assert (config.reply.max_tokens, config.reply.timeout) == (100, 5)
    assert (config.run.max_total_tokens, config.run.run_timeout) == (10_000, 60)
    names = set(OPTION_GROUP)
    for name in names:
        assert f"max_total_{name.removeprefix('max_')}" not in names or name == "max_tokens"


def test_invalid_values_are_rejected_with_the_option_name() -> None:
    for bad, match in [
        ({"max_iterations": 0}, "max_iterations"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"run_timeout": -1}, "run_timeout"),
        ({"max_cost": 0}, "max_cost"),
    ]:
        with pytest.raises(ValueError, match=match):
            RLMConfig(**bad)


def test_config_is_immutable_and_replace_copies() -> None:
    config = RLMConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.run = RunLimits(max_iterations=3)  # type: ignore[misc]
    changed = config.replace(max_iterations=3)
    assert (config.run.max_iterations, changed.run.max_iterations) == (30, 3)


def test_reply_options_reach_named_clients_only() -> None:
    config = RLMConfig(
        backend="openai",
        model="root-m",
        sub_model="sub-m",
        base_url="http://127.0.0.1:9/v1",
        max_tokens=50,
        timeout=3.0,
        backend_kwargs={"pricing": (1, 2)},
        sub_backend_kwargs={"pricing": (3, 4)},
    )
    root = client_kwargs(config)
    sub = client_kwargs(config, sub=True)
    assert root == {
        "model_name": "root-m",
        "base_url": "http://127.0.0.1:9/v1",
        "max_tokens": 50,
        "timeout": 3.0,
        "prompt_caching": True,
        "pricing": (1, 2),
    }
    assert sub["model_name"] == "sub-m" and sub["pricing"] == (3, 4)
    root_client, sub_client = make_clients(config)
    assert root_client is not sub_client
    # The openai client holds the cap itself (sent as max_tokens or max_completion_tokens).
    cap = getattr(root_client, "max_tokens", None)
    assert (cap or root_client.completion_kwargs.get("max_tokens")) == 50  # type: ignore[attr-defined]
    # A ready chat model keeps its own settings; only the model name reaches it.
    chat_root, chat_sub = make_clients(RLMConfig(backend=FAKE_LLM, max_tokens=50))
    assert chat_root is chat_sub


def test_dspy_module_rejects_options_set_on_the_dspy_lm() -> None:
    with pytest.raises(TypeError, match="dspy.LM"):
        RLMModule("q -> a", max_tokens=100)
    assert isinstance(RLMModule("q -> a").config, RLMConfig)
    assert dspy.Module in type(RLMModule("q -> a")).__mro__


def test_cli_flag_values_are_usage_errors() -> None:
    args = build_parser().parse_args(["run", "-c", "x", "--max-iterations", "0"])
    with pytest.raises(ValueError, match="max_iterations"):
        options_from_args(args)
    assert isinstance(args, argparse.Namespace)
