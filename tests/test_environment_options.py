"""Environment options are checked by name and type where they enter (a config, a
constructor, ``rlm run --env-opt``), with errors that list the valid ones, before any LM
call or worker start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlm_engine import RLM, RLMConfig
from rlm_engine.environments import LocalEnvironment, make_environment
from rlm_engine.environments.docker_env import DockerEnvironment
from rlm_engine.environments.subprocess_env import SubprocessEnvironment

VALID_SUBPROCESS = (
    "Valid options of SubprocessEnvironment: timeout (float | None), max_output_chars (int), "
    "memory_mb (int), cpu_seconds (int | None), file_size_mb (int), disk_mb (int), "
    "max_processes (int), kill_grace (float), start_timeout (float), "
    "env (dict[str, str] | None), landlock (bool | None), python (str | None)."
)


def test_a_value_of_the_wrong_type_names_the_option_and_the_valid_ones() -> None:
    with pytest.raises(TypeError) as err:
        make_environment("subprocess", {"timeout": "abc"})
    assert str(err.value) == (
        "SubprocessEnvironment option 'timeout' must be float | None, got str 'abc'. "
        + VALID_SUBPROCESS
    )


@pytest.mark.parametrize(
    "option",
    [
        {"memory_mb": "512"},
        {"memory_mb": True},  # a bool is not a size
        {"env": {"A": 1}},
        {"landlock": "yes"},
        {"kill_grace": None},
    ],
)
def test_every_construction_path_checks_types(option: dict) -> None:
    for make in (
        lambda: make_environment("subprocess", option),
        lambda: SubprocessEnvironment(**option),
        lambda: RLMConfig(environment="subprocess", environment_kwargs=option),
        lambda: RLM(backend="scripted", environment_kwargs=option),  # default: auto
    ):
        with pytest.raises(TypeError, match=f"option '{next(iter(option))}' must be"):
            make()


def test_good_values_pass_ints_included_where_floats_are_expected() -> None:
    env = make_environment("subprocess", {"timeout": 30, "kill_grace": 1, "env": {"A": "1"}})
    assert isinstance(env, SubprocessEnvironment) and env.timeout == 30
    # An option of another kind passes through, checked against that kind's type.
    assert make_environment("local", {"memory_mb": 512}).name == "local"
    with pytest.raises(TypeError, match="LocalEnvironment option 'memory_mb' must be int"):
        LocalEnvironment(memory_mb="lots")


def test_docker_work_mb_is_now_disk_mb() -> None:
    with pytest.warns(DeprecationWarning, match="now disk_mb"):
        env = DockerEnvironment(work_mb=64)
    assert env.disk_mb == 64
    assert DockerEnvironment(disk_mb=32).disk_mb == 32


def test_disk_mb_must_be_positive() -> None:
    with pytest.raises(ValueError, match="disk_mb must be at least 1"):
        make_environment("sandbox", {"disk_mb": 0})


def _rlm_run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    doc = tmp_path / "doc.txt"
    doc.write_text("a document\n")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run(
        [sys.executable, "-W", "default", "-m", "rlm_engine.cli", "run", "-c", str(doc)]
        + ["-q", "What is it?", "--backend", "scripted", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--env-opt", "timeout=abc"],
            "rlm: error: environment 'auto' option 'timeout' must be float | None, got str 'abc'.",
        ),
        (
            ["--env-opt", "bogus=1"],
            "rlm: error: environment 'auto' got unknown option(s): 'bogus'.",
        ),
        (
            ["-e", "subprocess", "--env-opt", "memory_mb=abc"],
            "rlm: error: SubprocessEnvironment option 'memory_mb' must be int, got str 'abc'.",
        ),
    ],
)
def test_rlm_run_rejects_bad_env_opts_before_running(
    args: list[str], message: str, tmp_path: Path
) -> None:
    r = _rlm_run(*args, tmp_path=tmp_path)
    assert r.returncode == 64, r.stderr  # a usage error, like every bad flag
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("rlm: error:")]
    assert line.startswith(message) and "Valid options of" in line
    assert "never awaited" not in r.stderr and "iteration 1" not in r.stderr


def test_an_option_other_kinds_declare_differently_takes_what_any_of_them_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``python`` is ``str | None`` for some kinds and ``str`` for docker: a ``None`` given
    to a kind that does not own it passed or failed by the order the classes came out of
    a set, so the same call could succeed in one process and fail in the next."""
    from rlm_engine.environments import base

    classes = sorted(base.known_environment_classes(), key=lambda c: c.__qualname__)
    owners = [c for c in classes if "python" in base.options_of(c)]
    assert len({str(base.options_of(c)["python"].hint) for c in owners}) > 1
    for order in (classes, classes[::-1]):  # whichever kind comes first
        monkeypatch.setattr(base, "known_environment_classes", lambda order=order: list(order))
        LocalEnvironment(python=None)  # accepted: subprocess and sandbox take it
        with pytest.raises(TypeError, match="'python' must be str | None"):
            LocalEnvironment(python=3)
