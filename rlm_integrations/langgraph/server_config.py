"""The RLM configuration of a graph served by LangGraph Server, from env vars and ``configurable``.

A served graph has no Python caller to pass ``build_rlm_graph(...)`` keywords, so the same
:class:`~rlm_engine.config.RLMConfig` options arrive two ways, by the same names:

- **environment variables** set by whoever runs the server (``langgraph.json``'s ``env``, the
  deployment's secrets): ``RLM_<OPTION>`` in capitals, e.g. ``RLM_MODEL=gpt-5-mini``,
  ``RLM_BASE_URL=http://vllm:8000/v1``, ``RLM_MAX_ITERATIONS=20``, ``RLM_MAX_COST=none``
  (a whole-run limit removed), ``RLM_ENVIRONMENT_KWARGS='{"timeout": 30}'`` (JSON);
- the **run's** ``config["configurable"]`` (``client.runs.create(..., config={"configurable":
  {"max_iterations": 10}})`` or the assistant's config), which wins over the environment.

Who may set what: the environment may set every option that has a text form; a run's
``configurable`` comes from whoever can call the API, so it may set only
:data:`CALLER_OPTIONS` by default (the model names, sampling, reply caps and the run's limits).
The limits among them only tighten: a caller may lower ``max_cost`` or ``max_iterations``
below the server's value, never raise or remove it (the server pays for the run).
``base_url``, ``backend`` and their kwargs would let a caller send the server's API key to a
server of their choosing, ``environment`` could turn isolation off, and ``api_key`` would be
written into every checkpoint's metadata (LangGraph copies ``configurable`` there). The
server's operator widens the list with ``RLM_SERVER_CONFIGURABLE=base_url,backend`` (option
names, comma-separated, or ``*`` for all but ``api_key``; a limit named there may also be
raised) - for development servers.
"""

from __future__ import annotations

import json
import os
import types
import typing
from collections.abc import Mapping
from typing import Any

from rlm_engine.config import OptionInfo, RLMConfig, options, unknown_option_error

#: Environment variable prefix of the options: ``RLM_MAX_ITERATIONS`` -> ``max_iterations``.
ENV_PREFIX = "RLM_"
#: The operator's list of extra options a run's ``configurable`` may set (or ``*``).
CONFIGURABLE_ENV = "RLM_SERVER_CONFIGURABLE"

#: Options with no text form (Python objects), and what to do instead.
NOT_SERVED: dict[str, str] = {
    "tools": "host functions are Python callables: build your own graph with build_rlm_graph",
    "tools_doc": "documents tools, which a served graph cannot take",
    "on_event": "a Python callback: stream with stream_mode='custom' to get the events",
    "logger": "an object: stream the run's events, or build your own graph with a logger",
    "tracer_provider": "an object: set the standard OTEL_* exporter variables on the server",
}

#: What a run's ``configurable`` may set unless the operator widens it (module docstring).
CALLER_OPTIONS: frozenset[str] = frozenset(
    {
        "model",
        "sub_model",
        "temperature",
        "max_tokens",
        "max_iterations",
        "max_depth",
        "max_concurrency",
        "max_llm_calls",
        "max_total_tokens",
        "max_cost",
        "run_timeout",
        "final_answer_on_max_iterations",
        "max_output_chars",
        "keep_last_iterations",
        "verbose",
    }
)

#: Caller options that are limits: a caller's value may only be at or below the server's.
CEILINGS: frozenset[str] = frozenset(
    {
        "max_tokens",
        "max_iterations",
        "max_depth",
        "max_concurrency",
        "max_llm_calls",
        "max_total_tokens",
        "max_cost",
        "run_timeout",
        "max_output_chars",
    }
)

#: Never from ``configurable``: LangGraph stores ``configurable`` in checkpoint metadata.
NEVER_FROM_CALLER: frozenset[str] = frozenset({"api_key"})

_NO_VALUE = "none"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ServerConfigError(ValueError):
    """An option from the environment or ``configurable`` that cannot be used."""


def _types(info: OptionInfo) -> tuple[set[Any], bool]:
    tp = info.type
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = set(typing.get_args(tp))
    else:
        args = {tp}
    optional = type(None) in args
    return {typing.get_origin(a) or a for a in args} - {type(None)}, optional


def parse_text(info: OptionInfo, text: str, where: str) -> Any:
    """An option's value from its text form (an env var, or a string in ``configurable``)."""
    kinds, optional = _types(info)
    raw = text.strip()
    if optional and raw.lower() == _NO_VALUE:
        return None
    try:
        if bool in kinds:
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ValueError("expected true or false")
        if int in kinds:
            return int(raw)
        if float in kinds:
            return float(raw)
        if dict in kinds:
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return value
    except (ValueError, json.JSONDecodeError) as e:
        none = f" or {_NO_VALUE!r}" if optional else ""
        kind = " or ".join(sorted(getattr(k, "__name__", str(k)) for k in kinds))
        raise ServerConfigError(f"{where}={text!r}: {e} ({kind}{none} expected)") from None
    return text


def options_from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The options the server's environment sets (``RLM_<OPTION>``)."""
    env = os.environ if env is None else env
    out: dict[str, Any] = {}
    for name, info in options().items():
        var = ENV_PREFIX + name.upper()
        if var not in env or name in NOT_SERVED:
            continue
        out[name] = parse_text(info, env[var], var)
    return out


def caller_options(env: Mapping[str, str] | None = None) -> frozenset[str]:
    """The options a run's ``configurable`` may set on this server."""
    env = os.environ if env is None else env
    extra = {x.strip() for x in env.get(CONFIGURABLE_ENV, "").split(",") if x.strip()}
    if "*" in extra:
        return frozenset(options()) - NEVER_FROM_CALLER - set(NOT_SERVED)
    unknown = extra - set(options())
    if unknown:
        raise unknown_option_error(unknown, where=CONFIGURABLE_ENV)
    return (CALLER_OPTIONS | extra) - NEVER_FROM_CALLER - set(NOT_SERVED)


def options_from_configurable(
    configurable: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The options a run's ``configurable`` sets; other keys (``thread_id``, the server's
    own, a parent graph's) are not options and are left alone."""
    infos = options()
    allowed = caller_options(env)
    out: dict[str, Any] = {}
    for name, value in configurable.items():
        if name not in infos:
            continue
        if name not in allowed:
            if name in NEVER_FROM_CALLER:
                why = (
                    "a key in configurable is stored in every checkpoint's metadata; set "
                    f"{ENV_PREFIX}{name.upper()} (or the provider's variable) on the server"
                )
            elif name in NOT_SERVED:
                why = NOT_SERVED[name]
            else:
                why = (
                    f"this server lets a run set only {sorted(allowed)}; its operator can "
                    f"allow more with {CONFIGURABLE_ENV}={name} or set "
                    f"{ENV_PREFIX}{name.upper()}"
                )
            raise ServerConfigError(f"configurable {name!r} is not accepted: {why}")
        if isinstance(value, str) and name not in ("backend", "sub_backend", "environment"):
            value = parse_text(infos[name], value, f"configurable {name}")
        out[name] = value
    return out


def served_config(
    configurable: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> RLMConfig:
    """The served graph's :class:`RLMConfig`: defaults, then the environment, then the
    run's ``configurable``; an invalid value raises :class:`ServerConfigError` naming it."""
    opts = options_from_env(env)
    try:
        server = RLMConfig(**opts)
        asked = options_from_configurable(configurable or {}, env)
        _within_ceilings(server, asked, env)
        return server.replace(**asked)
    except ServerConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ServerConfigError(f"Invalid RLM option for the served graph: {e}") from None


def _within_ceilings(
    server: RLMConfig, asked: Mapping[str, Any], env: Mapping[str, str] | None
) -> None:
    env = os.environ if env is None else env
    raisable = {x.strip() for x in env.get(CONFIGURABLE_ENV, "").split(",")}
    for name, value in asked.items():
        if name not in CEILINGS or name in raisable or "*" in raisable:
            continue
        limit = server[name]
        if limit is None:
            continue
        if value is None or (isinstance(value, int | float) and value > limit):
            raise ServerConfigError(
                f"configurable {name}={value!r} is above this server's limit of {limit!r}: "
                f"a run may lower a limit, not raise or remove it (the operator sets "
                f"{ENV_PREFIX}{name.upper()}, or lets runs raise it with "
                f"{CONFIGURABLE_ENV}={name})"
            )


__all__ = [
    "CALLER_OPTIONS",
    "CEILINGS",
    "CONFIGURABLE_ENV",
    "ENV_PREFIX",
    "NOT_SERVED",
    "ServerConfigError",
    "caller_options",
    "options_from_configurable",
    "options_from_env",
    "parse_text",
    "served_config",
]
