"""The isolated environments by name, imported by ``rlm_engine.environments``."""

from __future__ import annotations

from rlm_engine.environments.base import Environment
from rlm_engine.environments.docker_env import DockerEnvironment
from rlm_engine.environments.sandbox import SandboxEnvironment
from rlm_engine.environments.subprocess_env import SubprocessEnvironment

ISOLATED_ENVIRONMENTS: dict[str, type[Environment]] = {
    "subprocess": SubprocessEnvironment,
    "sandbox": SandboxEnvironment,
    "docker": DockerEnvironment,
}
