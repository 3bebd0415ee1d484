"""A misspelled option of an environment or of the scripted client is an error naming it,
while options meant for another kind of environment or client still pass through."""

from __future__ import annotations

import pytest

from rlm_engine.clients.scripted import ScriptedClient
from rlm_engine.environments import Environment, LocalEnvironment, make_environment


def test_environment_rejects_a_misspelled_option() -> None:
    with pytest.raises(TypeError, match=r"LocalEnvironment got unknown option\(s\): 'timout'"):
        make_environment("local", {"timout": 5})
    with pytest.raises(TypeError, match=r"SubprocessEnvironment .*'pyhton'"):
        make_environment("subprocess", {"pyhton": "python3"})


def test_environment_ignores_options_of_other_kinds() -> None:
    env = make_environment("local", {"timeout": 3, "kill_grace": 15, "memory_mb": 512})
    assert isinstance(env, LocalEnvironment) and env.timeout == 3
    env = make_environment("subprocess", {"image": "rlm-sandbox:test", "bwrap": None})
    assert isinstance(env, Environment)


def test_scripted_client_takes_the_common_client_options_only() -> None:
    client = ScriptedClient(
        "scripted-root",
        base_url="http://unused",
        api_key="x",
        temperature=0.0,
        max_tokens=100,
        timeout=5.0,
        max_retries=1,
    )
    assert client.model_name == "scripted-root"
    with pytest.raises(TypeError, match="max_retires"):
        ScriptedClient(max_retires=1)  # type: ignore[call-arg]
