"""Fixtures for the LangGraph integration tests: a needle-in-a-haystack task and graphs
pointed at the scripted server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from lg_support import make_haystack

from rlm_integrations.langgraph import REGISTRY
from rlm_integrations.langgraph.runtime import run_blocking


@pytest.fixture(scope="session")
def haystack() -> str:
    return make_haystack()


@pytest.fixture
def graph_kwargs(openai_kwargs: dict, sub_kwargs: dict) -> dict[str, Any]:
    """``build_rlm_graph`` keywords: scripted root and sub model over HTTP."""
    return {
        "backend": "openai",
        "backend_kwargs": openai_kwargs,
        "sub_backend": "openai",
        "sub_backend_kwargs": sub_kwargs,
        "max_iterations": 6,
    }


@pytest.fixture(autouse=True)
def close_leftover_sessions() -> Iterator[None]:
    """Runs paused or failed on purpose keep their live session; close them after a test."""
    yield
    run_blocking(REGISTRY.aclose_all())
