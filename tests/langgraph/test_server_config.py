"""The served graphs' configuration: every option with a text form reaches the RLM from an
``RLM_<OPTION>`` variable and from ``configurable`` (where the operator allows it), with the
same value as ``RLMConfig(option=value)``; a caller may only tighten limits."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from rlm_engine.config import OPTION_GROUP, RLMConfig
from rlm_integrations.langgraph.server import agent_graph, rlm_graph
from rlm_integrations.langgraph.server_config import (
    CALLER_OPTIONS,
    NOT_SERVED,
    ServerConfigError,
    served_config,
)


def _samples(tmp_path: Path) -> dict[str, Any]:
    """The non-default value of every option that ``tests/test_config.py`` walks."""
    path = Path(__file__).resolve().parents[1] / "test_config.py"
    spec = importlib.util.spec_from_file_location("_config_samples", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    samples: dict[str, Any] = module.samples(tmp_path)
    return samples


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _only(config: RLMConfig, name: str) -> dict[str, Any]:
    return {k: v for k, v in config.to_options().items() if k != name}


def test_every_option_is_served_or_says_why(tmp_path: Path) -> None:
    samples = _samples(tmp_path)
    assert set(NOT_SERVED) <= set(OPTION_GROUP)
    defaults = _only(RLMConfig(), "")
    for name, value in samples.items():
        if name in NOT_SERVED:
            continue
        var = f"RLM_{name.upper()}"
        from_env = served_config({}, env={var: _text(value)})
        assert from_env[name] == value, (var, from_env[name])
        assert _only(from_env, name) == {k: v for k, v in defaults.items() if k != name}
        everything = {"RLM_SERVER_CONFIGURABLE": "*"}
        if name == "api_key":
            with pytest.raises(ServerConfigError, match="checkpoint's metadata"):
                served_config({name: value}, env=everything)
            continue
        from_run = served_config({name: value}, env=everything)
        assert from_run[name] == value, name


def test_configurable_wins_over_env_and_other_keys_are_ignored() -> None:
    env = {"RLM_MODEL": "server-model", "RLM_MAX_ITERATIONS": "12"}
    config = served_config(
        {"model": "run-model", "max_iterations": "5", "thread_id": "t", "user_id": "u"}, env=env
    )
    assert config["model"] == "run-model" and config["max_iterations"] == 5


def test_a_caller_may_lower_a_limit_but_not_raise_or_remove_it() -> None:
    env = {"RLM_MAX_COST": "2.0", "RLM_MAX_ITERATIONS": "10"}
    assert served_config({"max_cost": 0.5}, env=env)["max_cost"] == 0.5
    for asked in ({"max_cost": 3}, {"max_cost": None}, {"max_iterations": 11}):
        with pytest.raises(ServerConfigError, match="may lower a limit"):
            served_config(asked, env=env)
    # the operator lets runs raise it; and a limit the server removed is the caller's
    assert (
        served_config({"max_cost": 3}, env={**env, "RLM_SERVER_CONFIGURABLE": "max_cost"})[
            "max_cost"
        ]
        == 3
    )
    assert served_config({"run_timeout": 99}, env={})["run_timeout"] == 99


@pytest.mark.parametrize("name", ["base_url", "backend", "environment", "backend_kwargs"])
def test_a_caller_cannot_redirect_the_servers_key_or_isolation(name: str) -> None:
    assert name not in CALLER_OPTIONS
    with pytest.raises(ServerConfigError, match=f"RLM_SERVER_CONFIGURABLE={name}"):
        served_config({name: "local" if name == "environment" else "x"}, env={})


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"RLM_MAX_ITERATIONS": "many"}, "RLM_MAX_ITERATIONS='many'"),
        ({"RLM_MAX_COST": "none", "RLM_MAX_DEPTH": "0"}, "max_depth must be at least 1"),
        ({"RLM_ENVIRONMENT_KWARGS": "[1]"}, "expected a JSON object"),
        ({"RLM_VERBOSE": "maybe"}, "expected true or false"),
        ({"RLM_SERVER_CONFIGURABLE": "max_iteration"}, "did you mean 'max_iterations'"),
    ],
)
def test_bad_server_settings_say_which_and_what(env: dict[str, str], says: str) -> None:
    with pytest.raises((ServerConfigError, TypeError), match=says):
        served_config({"model": "m"}, env=env)


def test_removing_a_budget_on_the_server() -> None:
    assert served_config({}, env={"RLM_MAX_COST": "none"})["max_cost"] is None


def test_the_factories_build_graphs_from_the_runs_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_MAX_ITERATIONS", "9")
    run = {"configurable": {"thread_id": "t", "max_iterations": 4}}
    graph = rlm_graph(run)
    assert graph.config is not None and graph.config["recursion_limit"] == 3 * 4 + 10
    assert set(graph.get_graph().nodes) >= {"generate", "execute", "check_final"}
    agent = agent_graph(run)
    assert set(agent.get_graph().nodes) >= {"rlm", "ask_for_context"}
    with pytest.raises(ServerConfigError):
        rlm_graph({"configurable": {"max_iterations": 10}})  # above the server's 9
