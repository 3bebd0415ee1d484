"""Remote sandboxes: the same stdio worker as the local environments, somewhere else.

``modal`` (Modal Sandbox + exec), ``prime`` (Prime Intellect VM sandbox + live process),
``e2b`` (E2B sandbox + background command) and ``command`` (any box a command such as
``ssh host`` or ``kubectl exec -i pod --`` reaches). ``transport.py`` is the one seam a
provider implements; ``base.py`` the host side they share. Importing this package imports
no provider SDK: each is imported when an environment of its kind starts.
"""

from __future__ import annotations

from rlm_engine.environments.base import Environment
from rlm_engine.environments.remote.base import (
    MissingCredentialsError,
    RemoteEnvironment,
)
from rlm_engine.environments.remote.command_env import CommandEnvironment
from rlm_engine.environments.remote.e2b_env import E2BEnvironment
from rlm_engine.environments.remote.modal_env import ModalEnvironment
from rlm_engine.environments.remote.prime_env import PrimeEnvironment

REMOTE_ENVIRONMENTS: dict[str, type[Environment]] = {
    "modal": ModalEnvironment,
    "prime": PrimeEnvironment,
    "e2b": E2BEnvironment,
    "command": CommandEnvironment,
}

__all__ = [
    "REMOTE_ENVIRONMENTS",
    "CommandEnvironment",
    "E2BEnvironment",
    "MissingCredentialsError",
    "ModalEnvironment",
    "PrimeEnvironment",
    "RemoteEnvironment",
]
