"""The paper authors' library's ``RLM(...)`` keywords as engine options.

One function, :func:`engine_options`, maps each keyword onto the flat options of
:class:`~rlm_engine.config.RLMConfig`:

- ``backend_kwargs={"model_name": ...}`` -> ``model`` (the rest stays client kwargs);
  ``sampling_args`` -> ``temperature``, ``max_tokens`` (per reply) and other body fields;
- ``vllm`` / ``openrouter`` / ``vercel`` -> the ``openai`` client at their URLs;
- ``other_backends=[b]`` / ``other_backend_kwargs=[kw]`` -> ``sub_backend`` / ``sub_model``;
- ``max_budget`` -> ``max_cost``, ``max_timeout`` -> ``run_timeout``, ``max_tokens`` (the
  whole run's tokens there) -> ``max_total_tokens``;
- ``custom_tools`` -> ``tools`` / ``tools_doc`` (values -> ``repl_setup``);
  ``environment_kwargs["setup_code"]`` -> ``repl_setup``;
- ``custom_system_prompt`` -> ``system_prompt`` (taken literally);
- ``compaction_threshold_pct`` -> ``compaction_threshold``; ``max_concurrent_subcalls``
  -> ``max_concurrency``; ``max_errors`` -> ``max_errors``; ``on_iteration_*`` /
  ``on_subcall_*`` -> ``on_event``;
- ``persistent=True`` is handled by :class:`~rlm_engine.compat.rlm.core.rlm.RLM` (a
  conversation), not here.

A keyword without an equivalent raises :class:`UnsupportedOptionError` naming what to use.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from rlm_engine.compat.rlm.tools import repl_tools

#: Marks a keyword the caller did not pass (the engine's default then applies).
UNSET: Any = type("Unset", (), {"__repr__": lambda self: "UNSET"})()

#: Backends of the seed library served by the engine's OpenAI-compatible client:
#: name -> (default base URL, environment variable of its key).
OPENAI_COMPATIBLE = {
    "openrouter": ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "vercel": ("https://ai-gateway.vercel.sh/v1", "AI_GATEWAY_API_KEY"),
}

#: Backends with no client here, and what to use instead.
NO_CLIENT = {
    "portkey": "Portkey's gateway is OpenAI-compatible: backend='openai' with "
    "backend_kwargs={'base_url': <your gateway URL>, 'default_headers': {...}, "
    "'model_name': ...}",
    "azure_openai": "Azure's v1 endpoint is OpenAI-compatible: backend='openai' with "
    "backend_kwargs={'base_url': 'https://<resource>.openai.azure.com/openai/v1/', "
    "'api_key': ..., 'model_name': <deployment>}",
}

#: Environments with no equivalent here, and what to use instead.
NO_ENVIRONMENT = {
    "ipython": "environment='local' runs code in this process like the in-process IPython "
    "REPL; 'subprocess' or 'sandbox' isolate it like its kernel mode",
}


class UnsupportedOptionError(ValueError):
    """A keyword of the seed library that has no equivalent on this engine."""


def _unsupported(name: str, instead: str) -> UnsupportedOptionError:
    return UnsupportedOptionError(f"{name} has no equivalent here: {instead}.")


def _client(backend: Any, kwargs: Mapping[str, Any] | None, label: str) -> dict[str, Any]:
    """``backend`` and its kwargs as ``{"backend", "model", "backend_kwargs"}``."""
    kw = dict(kwargs or {})
    model = kw.pop("model_name", None)
    sampling = dict(kw.pop("sampling_args", None) or {})
    out: dict[str, Any] = {}
    if isinstance(backend, str):
        if backend in NO_CLIENT:
            raise _unsupported(f"{label}={backend!r}", NO_CLIENT[backend])
        if backend == "vllm":
            if not kw.get("base_url"):
                raise ValueError(
                    f"{label}='vllm' needs the server's address: "
                    "backend_kwargs={'base_url': 'http://host:port/v1', 'model_name': ...}"
                )
            backend = "openai"
        elif backend in OPENAI_COMPATIBLE:
            url, key_var = OPENAI_COMPATIBLE[backend]
            kw.setdefault("base_url", url)
            if kw.get("api_key") is None and os.environ.get(key_var):
                kw["api_key"] = os.environ[key_var]
            backend = "openai"
    for name in ("temperature", "max_tokens"):
        if name in sampling:
            out[name] = sampling.pop(name)
    kw.update(sampling)  # other sampling fields go into the request body
    out["backend"] = backend
    out["model"] = model
    out["backend_kwargs"] = kw or None
    return out


def _sub_client(
    other_backends: list[Any] | None, other_backend_kwargs: list[dict[str, Any]] | None
) -> dict[str, Any]:
    if not other_backends:
        if other_backend_kwargs:
            raise ValueError("other_backend_kwargs needs other_backends (one backend per entry)")
        return {}
    if len(other_backends) != 1:
        raise _unsupported(
            f"other_backends with {len(other_backends)} entries",
            "one sub backend serves every sub-call; give one entry, and pick another "
            "model of that backend from REPL code with llm_query(prompt, model=...)",
        )
    kwargs = (other_backend_kwargs or [{}])[0]
    sub = _client(other_backends[0], kwargs, "other_backends[0]")
    if not sub["model"]:
        raise ValueError("other_backend_kwargs[0] needs 'model_name' (the sub-call model)")
    out = {"sub_backend": sub["backend"], "sub_model": sub["model"]}
    # Always set, so the sub client never inherits the root's key or URL.
    out["sub_backend_kwargs"] = sub["backend_kwargs"] or {}
    if "temperature" in sub or "max_tokens" in sub:
        raise _unsupported(
            "temperature/max_tokens in other_backend_kwargs' sampling_args",
            "the sub-calls share the root's per-reply max_tokens and temperature; set them "
            "in sampling_args (or RLM(..., max_tokens=...))",
        )
    return out


def _environment(environment: Any, environment_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if environment is not UNSET:
        if isinstance(environment, str) and environment in NO_ENVIRONMENT:
            raise _unsupported(f"environment={environment!r}", NO_ENVIRONMENT[environment])
        out["environment"] = environment
    kw = dict(environment_kwargs or {})
    if "setup_code" in kw:
        out["repl_setup"] = kw.pop("setup_code")
    if kw:
        out["environment_kwargs"] = kw
    return out


def _events(
    on_iteration_start: Callable[[int, int], None] | None,
    on_iteration_complete: Callable[[int, int, float], None] | None,
    on_subcall_start: Callable[[int, str, str], None] | None,
    on_subcall_complete: Callable[[int, str, float, str | None], None] | None,
    child_model: str,
) -> Callable[[dict[str, Any]], None] | None:
    """The seed library's callbacks as one engine ``on_event`` handler (``child_model``:
    the model child RLMs run on, for events that do not name one).

    As there, the subcall callbacks are for child RLMs only (an ``rlm_query`` that starts a
    child; at the depth limit ``rlm_query`` is a plain LM call and fires neither):
    ``on_subcall_start(depth, model, prompt_preview)`` with the child's depth, its model
    and the first 80 characters of its prompt, ``on_subcall_complete(depth, model,
    duration, error)`` when it returns. A callback that raises is ignored, as there
    (``RunResources.emit`` suppresses it).
    """
    if not (on_iteration_start or on_iteration_complete or on_subcall_start or on_subcall_complete):
        return None
    started: dict[tuple[int, int], float] = {}
    children: set[str] = set()  # call ids of the child RLMs that started

    def on_event(event: dict[str, Any]) -> None:
        kind, depth = event.get("event"), int(event.get("depth") or 0)
        if kind == "iteration_start":
            key = (depth, int(event.get("iteration") or 0))
            started[key] = time.perf_counter()
            if on_iteration_start:
                on_iteration_start(*key)
        elif kind == "iteration_end" and on_iteration_complete:
            key = (depth, int(event.get("iteration") or 0))
            elapsed = time.perf_counter() - started.pop(key, time.perf_counter())
            on_iteration_complete(*key, elapsed)
        elif kind == "subcall_start" and event.get("child"):
            children.add(str(event.get("call_id")))
            if on_subcall_start:
                model = str(event.get("model") or child_model)
                on_subcall_start(depth + 1, model, str(event.get("prompt") or "")[:80])
        elif kind == "subcall_end" and str(event.get("call_id")) in children:
            children.discard(str(event.get("call_id")))
            if on_subcall_complete:
                on_subcall_complete(
                    depth + 1,
                    str(event.get("model") or child_model),
                    float(event.get("latency") or 0.0),
                    event.get("error"),
                )

    return on_event


def engine_options(
    *,
    backend: Any,
    backend_kwargs: Mapping[str, Any] | None,
    environment: Any,
    environment_kwargs: Mapping[str, Any] | None,
    depth: int,
    max_depth: int,
    max_iterations: int,
    max_budget: Any,
    max_timeout: Any,
    max_tokens: Any,
    max_errors: int | None,
    custom_system_prompt: str | None,
    other_backends: list[Any] | None,
    other_backend_kwargs: list[dict[str, Any]] | None,
    logger: Any,
    verbose: bool,
    custom_tools: Mapping[str, Any] | None,
    custom_sub_tools: Mapping[str, Any] | None,
    compaction: bool,
    compaction_threshold_pct: float,
    max_concurrent_subcalls: Any,
    on_subcall_start: Any,
    on_subcall_complete: Any,
    on_iteration_start: Any,
    on_iteration_complete: Any,
    sampling_args: Mapping[str, Any] | None,
    sub_sampling_args: Mapping[str, Any] | None,
    orchestrator: bool,
    user_prologue: str | None,
) -> dict[str, Any]:
    """Flat engine options for the seed library's keywords (see the module docstring)."""
    if depth != 0:
        raise _unsupported(
            f"depth={depth}",
            "the engine sets the depth of child RLMs itself; a top-level "
            "RLM is depth 0 (set how deep children may go with max_depth)",
        )
    if not orchestrator:
        raise _unsupported("orchestrator=False", "give your own prompt with custom_system_prompt")
    if user_prologue is not None:
        raise _unsupported(
            "user_prologue",
            "put the text in root_prompt= of completion() (the root reads it "
            "every turn) or in custom_system_prompt",
        )
    if custom_sub_tools is not None and custom_sub_tools != (custom_tools or {}):
        raise _unsupported(
            "custom_sub_tools different from custom_tools",
            "child RLMs get the same custom_tools as the root; leave custom_sub_tools out",
        )
    if sub_sampling_args:
        raise _unsupported(
            "sub_sampling_args",
            "sub-calls share sampling_args with the root; put other "
            "request fields of the sub backend in other_backend_kwargs",
        )
    root_kwargs = dict(backend_kwargs or {})
    if sampling_args:
        merged = dict(root_kwargs.get("sampling_args") or {})
        merged.update(sampling_args)
        root_kwargs["sampling_args"] = merged
    out: dict[str, Any] = {
        k: v for k, v in _client(backend, root_kwargs, "backend").items() if v is not None
    }
    out.update(_sub_client(other_backends, other_backend_kwargs))
    env = _environment(environment, environment_kwargs)
    tools = repl_tools(custom_tools)
    if tools.functions:
        out["tools"] = tools.functions
    if tools.doc:
        out["tools_doc"] = tools.doc
    setup = "\n".join(s for s in (env.pop("repl_setup", ""), tools.setup) if s)
    if setup:
        out["repl_setup"] = setup
    out.update(env)
    out["max_depth"] = max_depth
    out["max_iterations"] = max_iterations
    if max_errors is not None:
        out["max_errors"] = max_errors
    for theirs, ours in (
        (max_budget, "max_cost"),
        (max_timeout, "run_timeout"),
        (max_tokens, "max_total_tokens"),
        (max_concurrent_subcalls, "max_concurrency"),
    ):
        if theirs is not UNSET:
            out[ours] = theirs
    if custom_system_prompt:
        # Taken literally (the engine's template fills {placeholders}); the tools' doc
        # still follows it, as the seed library appends it.
        literal = custom_system_prompt.replace("{", "{{").replace("}", "}}")
        out["system_prompt"] = literal + "\n{extra_tools}"
    if compaction or compaction_threshold_pct != 0.85:
        # The engine always compacts near the window (a run over it would fail); the
        # seed library's switch only says whether it may, so it maps to the threshold.
        out["compaction_threshold"] = compaction_threshold_pct
    if logger is not None:
        out["logger"] = logger
    out["verbose"] = verbose
    child_model = str(out.get("sub_model") or out.get("model") or "")
    on_event = _events(
        on_iteration_start,
        on_iteration_complete,
        on_subcall_start,
        on_subcall_complete,
        child_model,
    )
    if on_event is not None:
        out["on_event"] = on_event
    return out


__all__ = ["UNSET", "UnsupportedOptionError", "engine_options"]
