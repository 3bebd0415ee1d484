"""Execution environments, chosen by name: ``auto`` (the default), ``local``, ``subprocess``,
``sandbox``, ``docker``, and the remote ones ``modal``, ``prime``, ``e2b``, ``command``
(``remote/``).

``auto`` is the strongest isolated environment that works on the machine (``sandbox``, else
``subprocess``; see ``auto.py``). ``local`` runs generated code inside the host process:
fastest, and for trusted documents only.
"""

from __future__ import annotations

from typing import Any

from rlm_engine.environments.auto import AUTO, PREFERENCE, resolve_auto
from rlm_engine.environments.base import (
    Environment,
    HostFunction,
    options_of_others,
    validate_options,
)
from rlm_engine.environments.local import LocalEnvironment, warn_local
from rlm_engine.environments.options import OptionSpec, check_options, options_of

#: Every name ``make_environment`` accepts.
NAMES = (AUTO, "local", "subprocess", "sandbox", "docker", "modal", "prime", "e2b", "command")


def available_environments() -> dict[str, type[Environment]]:
    envs: dict[str, type[Environment]] = {"local": LocalEnvironment}
    try:
        from rlm_engine.environments.registry_isolated import ISOLATED_ENVIRONMENTS
    except ImportError:
        pass
    else:
        envs.update(ISOLATED_ENVIRONMENTS)
    try:  # the SDKs themselves are imported only when a remote environment starts
        from rlm_engine.environments.remote import REMOTE_ENVIRONMENTS
    except ImportError:
        pass
    else:
        envs.update(REMOTE_ENVIRONMENTS)
    return envs


def _environment_class(name: str) -> type[Environment]:
    envs = available_environments()
    try:
        return envs[name]
    except KeyError:
        raise ValueError(
            f"Unknown environment {name!r}. Choose one of: {', '.join([AUTO, *sorted(envs)])}, "
            "or pass an Environment subclass."
        ) from None


def validate_environment(environment: Any, kwargs: dict[str, Any] | None) -> None:
    """Check an environment choice and its options without starting (or probing) anything.

    ``ValueError`` for an unknown name, ``TypeError`` for an option no environment takes or
    a value of the wrong type; both messages list what is valid. Configs call this, so a
    mistake is reported before the first LM call.
    """
    kwargs = dict(kwargs or {})
    if isinstance(environment, Environment):
        return
    if isinstance(environment, type) and issubclass(environment, Environment):
        validate_options(environment, (), kwargs)
        return
    if not isinstance(environment, str):
        raise TypeError(
            f"environment must be a name ({', '.join(NAMES)}), an Environment subclass or an "
            f"instance, got {type(environment).__name__}"
        )
    if environment == AUTO:
        own: dict[str, OptionSpec] = {}
        for name in PREFERENCE:  # an option of either candidate is valid for auto
            own.update(options_of(_environment_class(name)))
        check_options("environment 'auto'", own, options_of_others(own), kwargs)
        return
    validate_options(_environment_class(environment), (), kwargs)


def make_environment(
    environment: str | type[Environment] | Environment,
    kwargs: dict[str, Any] | None = None,
    *,
    verbose: bool = False,
) -> Environment:
    """A fresh environment (each completion and each child RLM gets its own REPL).

    ``auto`` is resolved here (probed once per process). ``verbose`` runs warn once when
    they use ``local``, so a user watching code scroll by knows it runs in this process.
    """
    kwargs = dict(kwargs or {})
    if isinstance(environment, Environment):
        env = environment
    elif isinstance(environment, type) and issubclass(environment, Environment):
        env = environment(**kwargs)
    else:
        validate_environment(environment, kwargs)  # before probing: a typo fails fast
        name = resolve_auto() if environment == AUTO else environment
        env = _environment_class(name)(**kwargs)
    if verbose and env.in_process:
        warn_local("verbose output is on")
    return env


__all__ = [
    "AUTO",
    "NAMES",
    "Environment",
    "HostFunction",
    "LocalEnvironment",
    "available_environments",
    "make_environment",
    "validate_environment",
]
