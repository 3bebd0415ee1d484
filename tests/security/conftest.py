"""Fixtures for the adversarial suite: environments that must really run here, a clean-up
check after every test, and an optional JSON record of every measured outcome.

Set ``RLM_SECURITY_REPORT=path.json`` to write the outcomes (the README table is built from
that file). Opt-outs as in tests/test_environments.py: RLM_TESTS_ALLOW_NO_BWRAP=1,
RLM_TESTS_ALLOW_NO_DOCKER=1.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator

import pytest
from command_docker import remove_leftovers, wait_gone
from env_support import environments
from security_harness import Factory, env_kwargs, outcomes


@pytest.fixture
async def make_env(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """Start environments of the parametrized kind; afterwards assert nothing is left."""
    async with environments(request.param, env_kwargs(request.param)) as factory:
        yield factory
    if request.param == "command":  # each worker life was a `docker run --rm` container
        left = await asyncio.to_thread(wait_gone)
        if left:
            remove_leftovers()
        assert left == [], f"containers outlived close(): {left}"


@pytest.fixture(scope="session", autouse=True)
def _write_report() -> Iterator[None]:
    yield
    path = os.environ.get("RLM_SECURITY_REPORT")
    if path and outcomes:
        with open(path, "w") as f:
            json.dump(outcomes, f, indent=1)
