"""Real environments in tests: fail (or, opted out, visibly skip) when one cannot run here,
and check after each test that nothing an environment started outlived ``close()``.

Shared by the REPL-protocol suite (tests/test_environments.py) and the adversarial suite
(tests/security/).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from rlm_engine.aio import run_sync
from rlm_engine.environments import Environment, HostFunction, make_environment
from rlm_engine.environments.isolation import processes_of_uid
from rlm_engine.environments.probe import probe
from rlm_engine.environments.worker_env import WorkerEnvironment

OPT_OUT = {
    "sandbox": "RLM_TESTS_ALLOW_NO_BWRAP",
    "docker": "RLM_TESTS_ALLOW_NO_DOCKER",
    "command": "RLM_TESTS_ALLOW_NO_DOCKER",  # tested over `docker run` (tests/command_docker.py)
}
Factory = Callable[..., Awaitable[Environment]]
_probed: dict[str, str | None] = {}


def require_env(name: str, kwargs: dict[str, Any]) -> None:
    """Fail when ``name`` cannot run here; skip only when its opt-out variable is set."""
    if name not in _probed:
        _probed[name] = run_sync(probe(name, **kwargs))
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


@asynccontextmanager
async def environments(name: str, base_kwargs: dict[str, Any]) -> AsyncIterator[Factory]:
    """A factory of started environments of kind ``name``; all are closed and checked after."""
    require_env(name, base_kwargs)
    envs: list[Environment] = []

    async def factory(
        context: Any = "",
        functions: dict[str, HostFunction] | None = None,
        *,
        setup: str | None = None,
        **kw: Any,
    ) -> Environment:
        env = make_environment(name, {**base_kwargs, **kw})
        envs.append(env)
        await env.start(context, functions or {}, setup=setup)
        return env

    try:
        yield factory
    finally:
        for env in envs:
            await env.close()
    for env in envs:
        if isinstance(env, WorkerEnvironment) and env.uid is not None and name != "docker":
            assert processes_of_uid(env.uid) == [], "worker processes outlived close()"
    ids = [c for env in envs for c in getattr(env, "container_ids", [])]
    if ids:
        assert docker_leftovers(ids) == [], "containers outlived close()"
