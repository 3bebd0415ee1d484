"""When the host process dies abruptly (SIGKILL, no clean-up code runs), its workers must not
keep running: the worker exits on end-of-stream of its channel, bubblewrap has
``--die-with-parent``, and a container's stdin closes with the attach connection. Nothing
stays in the host's temp dir either: a janitor process deletes the host's directory once
the host is gone."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from command_docker import containers, remove_leftovers
from security_harness import docker_state, env_kwargs, require

from rlm_engine.environments.isolation import processes_of_uid

HOST = """
import asyncio, json, sys
from rlm_engine.environments import make_environment

async def main():
    env = make_environment(sys.argv[1], json.loads(sys.argv[2]))
    await env.start("ctx", {})
    await env.execute("open('left-behind', 'w').write('x' * 100_000)")
    ids = getattr(env, "container_ids", [])
    info = {"uid": env.uid, "containers": ids, "area": str(env.area.root)}
    print(json.dumps(info), flush=True)
    await env.execute("while True:\\n    pass")

asyncio.run(main())
"""


def eventually(predicate, seconds: float = 20.0) -> bool:
    """Poll until ``predicate()`` holds; a deadline, not a performance assertion."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.parametrize("name", ["subprocess", "sandbox", "docker", "command"])
def test_workers_die_with_a_killed_host(name: str) -> None:
    require(name)
    kw = {k: v for k, v in env_kwargs(name).items() if k != "timeout"}
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, name, json.dumps(kw)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    try:
        info = json.loads(host.stdout.readline())
        running = containers() if name == "command" else []
        time.sleep(0.5)  # let the cell start spinning
    finally:
        host.send_signal(signal.SIGKILL)
        host.wait()
    if name == "docker":
        (cid,) = info["containers"]
        try:
            assert eventually(lambda: docker_state(cid) in (None, "exited")), docker_state(cid)
        finally:
            import docker

            client = docker.from_env()
            with contextlib.suppress(docker.errors.NotFound):
                client.containers.get(cid).remove(force=True)
            client.close()
    elif name == "command":  # the `docker run -i --rm` client's stdin closed with the host
        try:
            assert len(running) == 1, running
            assert eventually(lambda: containers() == []), containers()
        finally:
            remove_leftovers()
    elif info["uid"] is not None:
        assert eventually(lambda: processes_of_uid(info["uid"]) == []), processes_of_uid(
            info["uid"]
        )
    host_dir = os.path.dirname(info["area"])  # $TMPDIR/rlm-<pid>-XXXX
    assert os.path.basename(host_dir).startswith(f"rlm-{host.pid}-")
    assert eventually(lambda: not os.path.exists(host_dir)), os.listdir(host_dir)


WARM_HOST = """
import asyncio, json, sys, time
from rlm_engine.environments import make_environment
from rlm_engine.environments.warm import warm_pool

async def main():
    for _ in range(2):  # the second start of a kind starts filling the pool
        env = make_environment(sys.argv[1], {})
        await env.start("ctx", {})
        await env.close()
    while warm_pool.idle(env) < 2:
        await asyncio.sleep(0.05)
    workers = [w for ws in warm_pool._ready.values() for w in ws]
    print(json.dumps({"pids": [w.proc.pid for w in workers],
                      "areas": [str(w.area.root) for w in workers]}), flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


@pytest.mark.parametrize("name", ["subprocess", "sandbox"])
def test_warm_workers_and_their_areas_go_with_a_killed_host(name: str) -> None:
    require(name)
    host = subprocess.Popen(
        [sys.executable, "-c", WARM_HOST, name], stdout=subprocess.PIPE, text=True
    )
    try:
        info = json.loads(host.stdout.readline())
    finally:
        host.send_signal(signal.SIGKILL)
        host.wait()
    assert len(info["pids"]) == 2
    # Idle warm workers are the host's children: gone with it (their channel closed).
    assert eventually(lambda: not any(_alive(pid) for pid in info["pids"]))
    assert eventually(lambda: not any(os.path.exists(a) for a in info["areas"]))
    assert not os.path.exists(os.path.dirname(info["areas"][0]))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
