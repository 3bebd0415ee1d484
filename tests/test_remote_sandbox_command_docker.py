"""``environment="command"`` for real through Docker: the prefix is ``docker run -i --rm
--network none --read-only ... rlm-sandbox:test`` (tests/command_docker.py), so every
worker life is a fresh container that the host reaches only through the command's stdio.

Checked against the daemon, not the worker's word: the code ran in a container of this
run, sub-calls were served by the host's scripted model over 127.0.0.1 while the box has no
network, the context reached a box that shares no file with the host, and no container of
this run is left after close, a cell timeout, a cancelled cell, a crash, a run timeout and
a run that ends in an error.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from command_docker import containers, docker_run, remove_leftovers, wait_gone
from env_support import require_env

from rlm_engine import RLM
from rlm_engine.environments import make_environment
from rlm_engine.scripted import Fault


@pytest.fixture
def kwargs() -> Iterator[dict[str, Any]]:
    """``environment_kwargs`` for the docker box; after the test, no container is left."""
    kw: dict[str, Any] = {"command": docker_run(), "timeout": 30, "kill_grace": 1}
    require_env("command", kw)
    yield kw
    left = wait_gone()
    if left:
        remove_leftovers()
    assert left == [], f"containers outlived the environment: {left}"


HOSTNAME = "import socket\nprint(socket.gethostname())"


async def _container(env: Any) -> str:
    """The id prefix of the container the worker runs in (docker's hostname for it)."""
    r = await env.execute(HOSTNAME)
    assert r.error is None, r.error
    (found,) = containers(r.stdout.strip())
    return found


def test_a_completion_runs_in_a_container_with_sub_calls_from_the_host(
    kwargs: dict[str, Any], scripted_model: Any, scripted_server: Any, openai_kwargs: dict
) -> None:
    scripted_model.add_rule(
        lambda r: r.is_rlm_root,
        [
            "```repl\nimport socket\nparts = llm_query_batched(['Say A', 'Say B'])\n"
            "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    net = 'net'\n"
            "except OSError:\n    net = 'no-net'\n"
            "n = f'{len(context)} {len(parts)} {net} {socket.gethostname()}'\n```",
            "FINAL_VAR(n)",
        ],
    )
    seen: list[list[str]] = []

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "code_start":
            seen.append(containers())  # asked of the daemon while the cell is about to run

    rlm = RLM(
        backend="openai",
        backend_kwargs=openai_kwargs,
        environment="command",
        environment_kwargs=kwargs,
        on_event=on_event,
    )
    text = 'it\'s "quoted" $HOME `x` \u00e9\n' * 2000
    res = rlm.completion(text, query="How long is the context?")
    assert res.status == "final", res.error
    length, n_parts, net, host = res.response.split()
    assert (int(length), int(n_parts), net) == (len(text), 2, "no-net")
    assert seen and len(seen[0]) == 1 and seen[0][0].startswith(host), (seen, host)
    served = [r for r in scripted_server.stats.log if r.path.endswith("/chat/completions")]
    assert len(served) == 4  # two root turns and the two sub-calls, all from the host


async def test_timeouts_crashes_and_restarts_each_get_a_fresh_container(
    kwargs: dict[str, Any],
) -> None:
    env = make_environment("command", kwargs)
    await env.start("ctx", {})
    try:
        first = await _container(env)
        r = await env.execute("before = 1\nimport time\ntime.sleep(600)", timeout=1)
        assert r.timed_out and not r.crashed, r
        assert (await env.execute("print(before, context)")).stdout == "1 ctx\n"
        assert await _container(env) == first  # an interrupt keeps the box and its state
        stuck = (
            "while True:\n    try:\n        while True:\n            pass\n"
            "    except BaseException:\n        pass\n"
        )
        r = await env.execute(stuck, timeout=1)
        assert r.crashed and "did not stop when interrupted" in (r.error or ""), r
        assert wait_gone(first) == []  # the stuck worker's container is gone
        assert (await env.execute("print(context)")).stdout == "ctx\n"  # sent again
        second = await _container(env)
        r = await env.execute("import os\nos._exit(3)")
        assert r.crashed, r
        assert wait_gone(second) == []
        assert (await env.execute("print(context)")).stdout == "ctx\n"
        third = await _container(env)
        assert len({first, second, third}) == 3
    finally:
        await env.close()
    assert wait_gone() == []


async def test_a_cancelled_cell_removes_its_container(kwargs: dict[str, Any]) -> None:
    env = make_environment("command", kwargs)
    await env.start("ctx", {})
    try:
        box = await _container(env)
        task = asyncio.ensure_future(env.execute("import time\ntime.sleep(600)"))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(wait_gone, box) == []
    finally:
        await env.close()


def test_a_run_timeout_leaves_no_container(
    kwargs: dict[str, Any], scripted_model: Any, openai_kwargs: dict
) -> None:
    scripted_model.add_rule(
        lambda r: r.is_rlm_root, ["```repl\nimport time\ntime.sleep(600)\n```"] * 3
    )
    rlm = RLM(
        backend="openai",
        backend_kwargs=openai_kwargs,
        environment="command",
        environment_kwargs=kwargs,
        run_timeout=3,
    )
    res = rlm.completion("ctx", query="wait")
    assert res.status == "timeout", (res.status, res.error)
    assert wait_gone() == []


def test_a_run_that_fails_leaves_no_container(
    kwargs: dict[str, Any], scripted_model: Any, scripted_server: Any, openai_kwargs: dict
) -> None:
    scripted_model.add_rule(lambda r: r.is_rlm_root, ["```repl\nx = 1\n```"] * 3)
    scripted_server.inject(
        Fault(status=400, times=None, match=lambda r: r.is_rlm_root and len(r.messages) > 2)
    )
    rlm = RLM(
        backend="openai",
        backend_kwargs=openai_kwargs,
        environment="command",
        environment_kwargs=kwargs,
    )
    res = rlm.completion("ctx", query="fail after one cell")
    assert res.status == "error" and "400" in (res.error or ""), (res.status, res.error)
    assert wait_gone() == []


async def test_an_unreachable_box_is_a_clear_error(kwargs: dict[str, Any]) -> None:
    env = make_environment("command", {**kwargs, "command": docker_run("rlm-no-such-image:none")})
    with pytest.raises(RuntimeError, match=r"exited with status 125: .*rlm-no-such-image"):
        await env.start("ctx", {})
    await env.close()


@pytest.fixture
def shared_box(kwargs: dict[str, Any]) -> Iterator[str]:
    """A container the test starts and removes itself: a box other processes share (its
    PID 1 is ``sleep``), reached with ``docker exec -i``."""
    run = docker_run()
    cid = subprocess.run(
        [*run[:2], "-d", *run[3:], "sleep", "600"],  # without -i: detached
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    try:
        yield cid
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=60, check=False)


def _in_box(cid: str, code: str) -> str:
    return subprocess.run(
        ["docker", "exec", cid, "python3", "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout


PROCESSES = (
    "import os\nfor p in sorted(os.listdir('/proc'), key=lambda p: p.zfill(9)):\n"
    "    if p.isdigit():\n"
    "        try:\n"
    "            print(p, open(f'/proc/{p}/cmdline', 'rb').read().split(b'\\0')[0].decode())\n"
    "        except OSError:\n"
    "            pass\n"
)


async def test_docker_exec_into_a_shared_box_stops_only_its_own_worker(
    kwargs: dict[str, Any], shared_box: str
) -> None:
    env = make_environment("command", {**kwargs, "command": ["docker", "exec", "-i", shared_box]})
    await env.start("ctx", {})
    try:
        r = await env.execute("import subprocess\np = subprocess.Popen(['sleep', '300'])\nprint(1)")
        assert r.error is None, r.error
        # Not PID 1 of the box, so the worker must not kill(-1): the job a cell started
        # and the box's own PID 1 both still run (the box's to manage).
        after = await asyncio.to_thread(_in_box, shared_box, PROCESSES)
        assert "1 sleep" in after and after.count(" sleep") == 2, after
        assert (await env.execute("print(context)")).stdout == "ctx\n"
        worker = env.worker_info["pid"]
    finally:
        await env.close()
    left = await asyncio.to_thread(_in_box, shared_box, PROCESSES)
    pids = {line.split()[0] for line in left.splitlines()}
    assert str(worker) not in pids and "1 sleep" in left, left  # it ended with its exec
    listing = await asyncio.to_thread(_in_box, shared_box, "import os\nprint(os.listdir('/tmp'))")
    assert "rlm-remote" not in listing, listing  # its work dir and context were removed
