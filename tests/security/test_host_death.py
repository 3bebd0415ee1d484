"""When the host process dies abruptly (SIGKILL, no clean-up code runs), its workers must not
keep running: the worker exits on end-of-stream of its channel, bubblewrap has
``--die-with-parent``, and a container's stdin closes with the attach connection."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from security_harness import docker_state, env_kwargs, require

from rlm_engine.environments.isolation import processes_of_uid

HOST = """
import asyncio, json, sys
from rlm_engine.environments import make_environment

async def main():
    env = make_environment(sys.argv[1], json.loads(sys.argv[2]))
    await env.start("ctx", {})
    ids = getattr(env, "container_ids", [])
    print(json.dumps({"uid": env.uid, "containers": ids}), flush=True)
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


@pytest.mark.parametrize("name", ["subprocess", "sandbox", "docker"])
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
    elif info["uid"] is not None:
        assert eventually(lambda: processes_of_uid(info["uid"]) == []), processes_of_uid(
            info["uid"]
        )
