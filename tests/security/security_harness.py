"""Shared helpers of the adversarial suite: which environments must run here, their test
limits, leftover checks and the record of measured outcomes (see conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from rlm_engine.aio import run_sync
from rlm_engine.environments import Environment
from rlm_engine.environments.probe import probe

OPT_OUT = {"sandbox": "RLM_TESTS_ALLOW_NO_BWRAP", "docker": "RLM_TESTS_ALLOW_NO_DOCKER"}
_probed: dict[str, str | None] = {}
outcomes: list[dict[str, str]] = []
Factory = Callable[..., Awaitable[Environment]]


def env_kwargs(name: str) -> dict[str, Any]:
    """Small limits so the attacks hit them quickly (and cheaply on a shared machine)."""
    kw: dict[str, Any] = {"timeout": 5}
    if name != "local":
        kw.update(memory_mb=512, max_processes=64, kill_grace=1)
    if name == "docker":
        kw["image"] = os.environ.get("RLM_DOCKER_IMAGE", "rlm-sandbox:test")
    return kw


def require(name: str) -> None:
    if name not in _probed:
        _probed[name] = run_sync(probe(name, **env_kwargs(name)))
    reason = _probed[name]
    if reason is None:
        return
    flag = OPT_OUT.get(name)
    if flag and os.environ.get(flag) == "1":
        pytest.skip(f"{name} environment unavailable ({reason}); skipped because {flag}=1")
    hint = f" Set {flag}=1 to skip it explicitly." if flag else ""
    pytest.fail(f"{name} environment unavailable: {reason.rstrip('.')}.{hint}")


def docker_leftovers(container_ids: list[str]) -> list[str]:
    """Which of these containers still exist on the daemon."""
    import docker

    client = docker.from_env()
    try:
        present = {
            c.id for c in client.containers.list(all=True, filters={"label": "rlm-environment"})
        }
    finally:
        client.close()
    return [c for c in container_ids if c in present]


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
