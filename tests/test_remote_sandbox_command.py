"""``command``: the worker over any command's stdin/stdout, tested for real (nothing mocked)
through commands that exist on this machine: ``nice -n 1`` (a prefix that runs a program
with our stdio, like ``kubectl exec -i pod --``) and an ssh stand-in that, like ssh, joins
the words it gets and hands them to a shell (``bash -c 'eval "$*"'``), so the quoting
``command_shell`` does is exercised.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from rlm_engine import RLM, RLMConfig
from rlm_engine.environments import make_environment
from rlm_engine.environments.remote import CommandEnvironment
from rlm_engine.environments.remote.transport import live_sandboxes

PY = {"python": "/usr/bin/python3"} if os.path.exists("/usr/bin/python3") else {}
PREFIX = ["nice", "-n", "1"]
SSH_LIKE = ["bash", "-c", 'eval "$*"', "ssh-like"]
COMMANDS = {"prefix": {"command": PREFIX}, "ssh-like": {"command": SSH_LIKE, "command_shell": True}}


@pytest.fixture(params=list(COMMANDS))
def kwargs(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    before = {e for e in os.listdir("/tmp") if e.startswith("rlm-remote-")}
    yield {**PY, **COMMANDS[request.param]}
    left = {e for e in os.listdir("/tmp") if e.startswith("rlm-remote-")} - before
    for entry in left:  # never expected: asserted in the tests; keep /tmp clean anyway
        shutil.rmtree(os.path.join("/tmp", entry), ignore_errors=True)
    assert not left, f"the box's files were not removed: {left}"


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] == b"Z"
    except OSError:
        return True


async def _wait_gone(pid: int) -> None:
    for _ in range(200):
        if _gone(pid):
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"worker {pid} still runs")


def test_a_completion_runs_through_the_command(
    kwargs: dict[str, Any], scripted_model: Any, openai_kwargs: dict
) -> None:
    scripted_model.add_rule(
        lambda r: r.is_rlm_root,
        [
            "```repl\nparts = llm_query_batched(['Say A', 'Say B'])\n"
            "n = f'{len(context)} {len(parts)}'\n```",
            "FINAL_VAR(n)",
        ],
    )
    rlm = RLM(
        backend="openai",
        backend_kwargs=openai_kwargs,
        environment="command",
        environment_kwargs={**kwargs, "timeout": 30},
    )
    res = rlm.completion('it\'s "quoted" $HOME `x`\n' * 100, query="How long is the context?")
    assert res.status == "final" and res.response == "2400 2", res.error
    assert res.environment == "command"


async def test_state_timeouts_kills_and_cleanup(kwargs: dict[str, Any]) -> None:
    env = make_environment("command", {**kwargs, "timeout": 30, "kill_grace": 1})
    assert isinstance(env, CommandEnvironment)
    await env.start("ctx", {})
    try:
        pid = env.worker_info["pid"]
        r = await env.execute("import os\nprint(sorted(os.environ)[:3], os.getcwd())")
        assert r.error is None and env.work_dir in r.stdout
        assert "OPENAI_API_KEY" not in r.stdout and "'HOME'" in r.stdout
        r = await env.execute("before = 1\nimport time\ntime.sleep(600)", timeout=1)
        assert r.timed_out and not r.crashed
        assert (await env.execute("print(before, context)")).stdout == "1 ctx\n"
        stuck = "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass\n"
        r = await env.execute(stuck, timeout=1)
        assert r.crashed and "did not stop when interrupted" in (r.error or "")
        await _wait_gone(pid)  # closing the command ended the stuck worker on the box
        assert (await env.execute("print(context)")).stdout == "ctx\n"
        pid = env.worker_info["pid"]
    finally:
        await env.close()
    await _wait_gone(pid)
    assert not os.path.exists(env.remote_root) and not os.path.exists(env.context_path)


async def test_a_cancelled_cell_ends_the_worker(kwargs: dict[str, Any]) -> None:
    env = make_environment("command", {**kwargs, "timeout": 30})
    await env.start("ctx", {})
    try:
        pid = env.worker_info["pid"]
        task = asyncio.ensure_future(env.execute("import time\ntime.sleep(600)"))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _wait_gone(pid)
    finally:
        await env.close()


async def test_without_a_command_the_error_says_what_to_pass() -> None:
    env = make_environment("command", {})
    with pytest.raises(ValueError, match=r"environment_kwargs=\{'command': \['ssh', 'host'\]\}"):
        await env.start("ctx", {})
    with pytest.raises(TypeError, match="option 'command' must be list"):
        RLMConfig(environment="command", environment_kwargs={"command": "ssh host"})


def test_ssh_is_recognised_as_a_remote_shell() -> None:
    assert CommandEnvironment(command=["/usr/bin/ssh", "box"]).command_shell is True
    assert CommandEnvironment(command=["kubectl", "exec", "-i", "p", "--"]).command_shell is False


async def test_a_failing_command_reports_its_status_and_stderr() -> None:
    env = make_environment(
        "command", {**PY, "command": ["sh", "-c", "echo no route >&2; exit 255"]}
    )
    with pytest.raises(RuntimeError, match="exited with status 255: no route"):
        await env.start("ctx", {})
    assert live_sandboxes() == []  # a box never reached has nothing to clean up
