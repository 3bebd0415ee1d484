"""Fixtures for the adversarial suite: environments that must really run here, a clean-up
check after every test, and an optional JSON record of every measured outcome.

Set ``RLM_SECURITY_REPORT=path.json`` to write the outcomes (the README table is built from
that file). Opt-outs as in tests/test_environments.py: RLM_TESTS_ALLOW_NO_BWRAP=1,
RLM_TESTS_ALLOW_NO_DOCKER=1.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from security_harness import Factory, docker_leftovers, env_kwargs, outcomes, require

from rlm_engine.environments import Environment, HostFunction, make_environment
from rlm_engine.environments.isolation import processes_of_uid
from rlm_engine.environments.worker_env import WorkerEnvironment


@pytest.fixture
async def make_env(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """Start environments of the parametrized kind; afterwards assert nothing is left."""
    name = request.param
    require(name)
    envs: list[Environment] = []

    async def factory(
        context: Any = "", functions: dict[str, HostFunction] | None = None, **kw: Any
    ) -> Environment:
        env = make_environment(name, {**env_kwargs(name), **kw})
        envs.append(env)
        await env.start(context, functions or {})
        return env

    yield factory
    for env in envs:
        await env.close()
    for env in envs:
        if isinstance(env, WorkerEnvironment) and env.uid is not None and name != "docker":
            assert processes_of_uid(env.uid) == [], "worker processes outlived close()"
    for env in envs:
        ids = getattr(env, "container_ids", [])
        assert docker_leftovers(ids) == [], "containers outlived close()"


@pytest.fixture(scope="session", autouse=True)
def _write_report() -> Iterator[None]:
    yield
    path = os.environ.get("RLM_SECURITY_REPORT")
    if path and outcomes:
        with open(path, "w") as f:
            json.dump(outcomes, f, indent=1)
