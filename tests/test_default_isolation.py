"""Isolated by default: a default ``RLM(...)`` and ``rlm run`` run model-written code outside
the host process (``environment="auto"``: sandbox where bubblewrap works, else subprocess),
decided once per process; ``local`` stays available, warns once, and what only works there
says so. The LangChain, LangGraph and DSPy forms have the same proof in their own suites
(``test_*_default_isolation.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from rlm_engine import RLM, RLMConfig
from rlm_engine.environments import (
    AUTO,
    Environment,
    HostFunction,
    LocalEnvironment,
    auto,
    local,
    make_environment,
)
from rlm_engine.environments.worker_env import WorkerEnvironment

SECRET_VAR = "RLM_PROOF_SECRET"
SECRET = "s3cr3t-only-the-host-knows"
#: Model-written code that tries to read the host's secret.
READ_SECRET = f"```repl\nimport os\nFINAL('secret=' + repr(os.environ.get({SECRET_VAR!r})))\n```"


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(SECRET_VAR, SECRET)
    return SECRET


def test_the_default_environment_is_auto() -> None:
    assert RLMConfig().repl.environment == AUTO
    assert auto.resolve_auto() in auto.PREFERENCE


def test_default_rlm_code_cannot_read_the_hosts_secret(
    secret: str, scripted_model: Any, openai_kwargs: dict
) -> None:
    scripted_model.add_rule(lambda r: r.is_rlm_root, READ_SECRET)
    res = RLM(backend="openai", backend_kwargs=openai_kwargs).completion("doc", query="secret?")
    assert res.status == "final"
    assert res.response == "secret=None"
    # Where it ran is part of the result: what auto chose here, never the host process.
    assert res.environment == auto.resolve_auto() != "local"
    assert res.to_dict()["environment"] == res.environment


def test_local_still_runs_in_process_when_asked(
    secret: str, scripted_model: Any, openai_kwargs: dict
) -> None:
    scripted_model.add_rule(lambda r: r.is_rlm_root, READ_SECRET)
    rlm = RLM(backend="openai", backend_kwargs=openai_kwargs, environment="local")
    res = rlm.completion("doc", query="secret?")
    assert res.response == f"secret={SECRET!r}" and res.environment == "local"


def test_rlm_run_code_cannot_read_the_hosts_secret(scripted_server: Any, tmp_path: Path) -> None:
    scripted_server.model.add_rule(lambda r: r.is_rlm_root, READ_SECRET)
    doc = tmp_path / "doc.txt"
    doc.write_text("a document\n")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update({SECRET_VAR: SECRET, "RLM_TEST_KEY": "sk-test"})
    r = subprocess.run(
        [sys.executable, "-m", "rlm_engine.cli", "run", "-c", str(doc), "-q", "secret?"]
        + ["--backend", "openai", "--base-url", scripted_server.base_url]
        + ["--model", "scripted-root", "--api-key-env", "RLM_TEST_KEY"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "secret=None\n"


# -- auto: decided once per process ------------------------------------------------------


@pytest.fixture
def fresh_decision() -> Any:
    auto.forget_decision()
    yield
    auto.forget_decision()


def test_auto_probes_once_and_prefers_the_sandbox(
    fresh_decision: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    probed: list[str] = []
    monkeypatch.setattr(auto, "_probe_now", lambda name: probed.append(name))  # all work
    kinds = {make_environment(AUTO).name for _ in range(5)}
    assert kinds == {"sandbox"} and probed == ["sandbox"]


def test_auto_falls_back_to_subprocess_and_says_why(
    fresh_decision: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    reasons = {"sandbox": "RuntimeError: bwrap: No permissions to create new namespace"}
    monkeypatch.setattr(auto, "_probe_now", lambda name: reasons.get(name))
    assert make_environment(AUTO).name == "subprocess"
    assert auto.auto_decision() == {
        "decided": True,
        "environment": "subprocess",
        "rejected": reasons,
    }


def test_auto_never_falls_back_to_local(
    fresh_decision: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auto, "_probe_now", lambda name: f"{name} is broken here")
    for _ in range(2):  # the failure is cached too: no probe storm on every completion
        with pytest.raises(RuntimeError) as err:
            make_environment(AUTO)
        assert "sandbox: sandbox is broken here; subprocess: subprocess is broken" in str(err.value)
        assert "environment='local' (trusted documents only)" in str(err.value)


def test_auto_checks_options_before_probing(
    fresh_decision: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auto, "_probe_now", lambda name: pytest.fail("probed"))
    with pytest.raises(TypeError, match="'auto' option 'timeout' must be float | None, got str"):
        make_environment(AUTO, {"timeout": "abc"})


# -- local: trusted documents only --------------------------------------------------------


@pytest.fixture
def warn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_warned", local.threading.Event())


async def test_local_warns_once_on_a_large_context(warn_again: None) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            env = LocalEnvironment()
            await env.start("x" * local.WARN_CONTEXT_CHARS, {})
            await env.close()
        small = LocalEnvironment()
        await small.start("small", {})
    assert [w.category for w in caught] == [local.LocalEnvironmentWarning]
    assert "trusted documents only" in str(caught[0].message)


def test_local_warns_with_verbose_and_stays_quiet_on_small_contexts(warn_again: None) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_environment("local")
        make_environment("subprocess", verbose=True)
        assert caught == []
        make_environment("local", verbose=True)
    assert [w.category for w in caught] == [local.LocalEnvironmentWarning]
    assert "verbose output is on" in str(caught[0].message)


# -- what only works in local says so -----------------------------------------------------


class LiveConnection:
    """A host object no other process can hold."""


async def test_a_tool_returning_a_live_object_names_local(make_isolated: Any) -> None:
    async def connect() -> LiveConnection:
        return LiveConnection()

    env = await make_isolated({"connect": HostFunction("connect", connect)})
    r = await env.execute("conn = connect()")
    assert "connect returned a LiveConnection, which cannot be sent into the" in (r.error or "")
    assert "needs environment='local' (trusted documents only)" in (r.error or "")
    # Plain data still crosses, and the REPL goes on.
    assert (await env.execute("print(1 + 1)")).stdout == "2\n"


async def test_a_context_of_host_objects_names_local(make_isolated: Any) -> None:
    with pytest.raises(TypeError, match=r"needs environment='local' \(trusted documents only\)"):
        await make_isolated({}, context={"conn": LiveConnection()})


@pytest.fixture
async def make_isolated() -> Any:
    envs: list[Environment] = []

    async def make(functions: dict[str, HostFunction], context: Any = "ctx") -> Environment:
        env = make_environment(AUTO)
        envs.append(env)
        await env.start(context, functions)
        return env

    yield make
    for env in envs:
        area = env.area if isinstance(env, WorkerEnvironment) else None
        await env.close()
        assert area is None or not area.root.exists()
