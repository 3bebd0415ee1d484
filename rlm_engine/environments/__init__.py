"""Execution environments, chosen by name: ``local``, ``subprocess``, ``sandbox``, ``docker``."""

from __future__ import annotations

from typing import Any

from rlm_engine.environments.base import Environment, HostFunction
from rlm_engine.environments.local import LocalEnvironment


def available_environments() -> dict[str, type[Environment]]:
    envs: dict[str, type[Environment]] = {"local": LocalEnvironment}
    try:
        from rlm_engine.environments.registry_isolated import ISOLATED_ENVIRONMENTS
    except ImportError:
        pass
    else:
        envs.update(ISOLATED_ENVIRONMENTS)
    return envs


def make_environment(
    environment: str | type[Environment] | Environment, kwargs: dict[str, Any] | None = None
) -> Environment:
    """A fresh environment (each completion and each child RLM gets its own REPL)."""
    kwargs = dict(kwargs or {})
    if isinstance(environment, Environment):
        return environment
    if isinstance(environment, type) and issubclass(environment, Environment):
        return environment(**kwargs)
    envs = available_environments()
    try:
        cls = envs[environment]
    except KeyError:
        raise ValueError(
            f"Unknown environment {environment!r}. Choose one of: {', '.join(sorted(envs))}, "
            "or pass an Environment subclass."
        ) from None
    return cls(**kwargs)


__all__ = [
    "Environment",
    "HostFunction",
    "LocalEnvironment",
    "available_environments",
    "make_environment",
]
