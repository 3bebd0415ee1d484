"""Shared helpers of the adversarial suite: which environments must run here, their test
limits, leftover checks and the record of measured outcomes (see conftest.py)."""

from __future__ import annotations

import os
from typing import Any

from command_docker import docker_run
from env_support import Factory, docker_leftovers, require_env

__all__ = ["Factory", "docker_leftovers", "env_kwargs", "outcomes", "record", "require"]

outcomes: list[dict[str, str]] = []


def env_kwargs(name: str) -> dict[str, Any]:
    """Small limits so the attacks hit them quickly (and cheaply on a shared machine)."""
    kw: dict[str, Any] = {"timeout": 5}
    if name != "local":
        kw.update(memory_mb=512, max_processes=64, kill_grace=1, disk_mb=64)
    if name == "docker":
        kw["image"] = os.environ.get("RLM_DOCKER_IMAGE", "rlm-sandbox:test")
    if name == "command":  # the box: docker run --network none --read-only ... (64 MB /tmp)
        kw["command"] = docker_run()
    return kw


def require(name: str) -> None:
    require_env(name, env_kwargs(name))


def record(env: str, attack: str, outcome: str, detail: str = "") -> None:
    outcomes.append(
        {
            "environment": env,
            "attack": attack,
            "outcome": outcome,
            "detail": detail.strip().splitlines()[-1][:160] if detail.strip() else "",
        }
    )


def docker_state(container_id: str) -> str | None:
    """``running``, ``exited``, ... or ``None`` when the container no longer exists."""
    import docker

    client = docker.from_env()
    try:
        return client.containers.get(container_id).status
    except docker.errors.NotFound:
        return None
    finally:
        client.close()
