"""One RLM configuration, defined once, grouped the way users think about it.

Every entry point (``RLM``, ``build_rlm_graph``, ``RLMChatModel``, ``RLMModule``, ``rlm
run``) maps its own idiom onto :class:`RLMConfig` in one place and accepts a ready config
too, so a knob added here is a knob of every form with the same default and meaning.

The groups:

- :class:`Models` - which LMs answer (root and sub) and how they are reached;
- :class:`ReplyLimits` - limits of ONE LM reply or request (``max_tokens``, ``timeout``);
- :class:`RunLimits` - limits of the WHOLE completion, children included
  (``max_total_tokens``, ``run_timeout``, ``max_cost``, ...);
- :class:`Repl` - where model-written code runs and what the root is told about it;
- :class:`History` - how the root's growing history is kept inside its window;
- :class:`Observability` - where the run is recorded and shown.

One vocabulary: a per-reply limit and a whole-run limit never share a name (``max_tokens``
caps one reply, ``max_total_tokens`` the run; ``timeout`` bounds one request,
``run_timeout`` the run), as in the OpenAI SDK and LangChain.

Options are also addressed flat, by field name (``RLMConfig(max_iterations=10)``,
``config.replace(run_timeout=60)``): field names are unique across the groups.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rlm_engine.environments import HostFunction, validate_environment

EventHandler = Callable[[dict[str, Any]], None]

DEFAULT_MAX_ITERATIONS = 30
DEFAULT_MAX_CONCURRENCY = 16
DEFAULT_MAX_OUTPUT_CHARS = 20_000
#: Default budgets of one completion: far above what a normal run uses (the quickstart uses
#: 44 calls and 0.5 M tokens), low enough that a runaway run (a newcomer's 300 MB file made
#: 6,302 calls and 78.9 M tokens) stops with status "budget" instead of billing on. Raise
#: them, or pass None to remove one.
DEFAULT_MAX_LLM_CALLS = 1_000
DEFAULT_MAX_TOTAL_TOKENS = 20_000_000
DEFAULT_MAX_COST = 25.0
#: Default bound of one LM request, retries included: a stalled or trickling server cannot
#: hold a call longer than this (generous for long reasoning replies).
DEFAULT_REQUEST_TIMEOUT = 300.0
#: Default cap on one LM reply, root turns and sub-call answers alike: far more than a code
#: turn or a sub-call answer needs, so a model that never stops is cut within minutes (a
#: weak model on llama.cpp wrote 7,527 tokens in one turn, about 5 minutes, until the
#: server's window ended the run). A cut reply is flagged and the root is told so.
DEFAULT_MAX_REPLY_TOKENS = 8_192
#: How a completion answers (``RunLimits.mode``): the RLM loop, one direct LM call, or
#: whichever fits (direct under the threshold).
MODES = ("rlm", "direct", "auto")
#: mode="auto" answers directly up to this share of the root model's window: reported
#: direct-call accuracy falls well before the window is full (the RLM paper's GPT-5 curves
#: drop from about 2^14-2^15 tokens), and the rest of the window keeps room for the reply.
#: Measure your own model with ``rlm eval`` and set direct_threshold(_tokens) from it.
DEFAULT_DIRECT_THRESHOLD = 0.25


def option(default: Any = None, doc: str = "", *, factory: Any = None) -> Any:
    """A config field with its one-line doc (shown by the CLI and LangChain field docs)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


def _at_least(name: str, value: float | None, low: float, *, strict: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if value < low or (strict and value == low):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


@dataclass(frozen=True)
class Models:
    """Which LMs answer and how they are reached.

    A ready ``LMClient`` or a LangChain chat model may stand for ``backend`` /
    ``sub_backend``; it then keeps its own connection settings (``base_url``, ``api_key``,
    ``temperature`` and the reply limits apply to backends given by name).
    """

    backend: Any = option(
        "openai",
        "root LM backend: a name (openai, anthropic, scripted, ...), an LMClient "
        "or a LangChain chat model",
    )
    model: str | None = option(None, "root model name (default: the backend's default)")
    sub_backend: Any = option(None, "backend of sub-calls (default: the root backend)")
    sub_model: str | None = option(None, "model for sub-calls (default: the root model)")
    base_url: str | None = option(None, "API base URL (OpenAI-compatible server, proxy, ...)")
    api_key: str | None = field(
        default=None, repr=False, metadata={"doc": "API key (default: the provider's variable)"}
    )
    temperature: float | None = option(None, "sampling temperature of every LM call")
    backend_kwargs: dict[str, Any] | None = option(
        None, "extra keyword arguments of the root client; they win over the options above"
    )
    sub_backend_kwargs: dict[str, Any] | None = option(
        None, "extra keyword arguments of the sub-call client (default: backend_kwargs)"
    )
    system_as_user: bool | None = option(
        None,
        "send the system prompt as the first user turn, for chat templates without a system "
        "role (Gemma's drops it on llama.cpp); None: where the server's template or the "
        "model's family is known to drop it (vllm, llamacpp, openai backends)",
    )


@dataclass(frozen=True)
class ReplyLimits:
    """Limits of one LM reply or request, root turns and sub-calls alike."""

    max_tokens: int | None = option(
        DEFAULT_MAX_REPLY_TOKENS,
        "cap on the tokens of each LM reply, root turns and sub-calls (a cut reply is "
        "flagged and the root told so; None: the server's own limit; not the run: see "
        "max_total_tokens)",
    )
    timeout: float | None = option(
        DEFAULT_REQUEST_TIMEOUT,
        "seconds one LM request may take, retries included (not the run: see run_timeout)",
    )
    max_retries: int | None = option(
        None, "retries of a failed LM request (default: the client's own, 3 for openai)"
    )

    def __post_init__(self) -> None:
        _at_least("max_tokens", self.max_tokens, 1)
        _at_least("timeout", self.timeout, 0, strict=True)
        _at_least("max_retries", self.max_retries, 0)


@dataclass(frozen=True)
class RunLimits:
    """Limits of the whole completion, child RLMs included, and whether it runs the RLM
    loop at all (``mode``: the loop, one direct LM call, or whichever fits)."""

    max_iterations: int = option(DEFAULT_MAX_ITERATIONS, "root turns before the run stops")
    max_depth: int = option(
        1, "recursion depth: 1 makes rlm_query a plain sub-LM call, 2 lets it start child RLMs"
    )
    max_concurrency: int = option(DEFAULT_MAX_CONCURRENCY, "sub-calls in flight at once")
    max_llm_calls: int | None = option(
        DEFAULT_MAX_LLM_CALLS, "budget: LM calls in the whole run (None: no limit)"
    )
    max_total_tokens: int | None = option(
        DEFAULT_MAX_TOTAL_TOKENS, "budget: tokens in the whole run (None: no limit)"
    )
    max_cost: float | None = option(
        DEFAULT_MAX_COST, "budget: cost in USD of the whole run, where prices are known"
    )
    run_timeout: float | None = option(None, "wall-clock seconds for the whole completion")
    max_errors: int | None = option(
        None,
        "stop after this many consecutive root turns whose code raised (a model that keeps "
        "writing failing code burns the budget); the best partial answer is kept (None: off)",
    )
    final_answer_on_max_iterations: bool = option(
        True, "when turns run out, ask the root once more for its best answer"
    )
    mode: str = option(
        "rlm",
        "rlm (the RLM loop, the paper's behaviour), direct (one LM call with the whole "
        "context and the query) or auto (direct when they fit under direct_threshold, else "
        "the loop); the result's path and path_reason say which ran and why",
    )
    direct_threshold: float = option(
        DEFAULT_DIRECT_THRESHOLD,
        "mode=auto answers directly when context and query fit in this share of the root "
        "model's input window (see direct_threshold_tokens)",
    )
    direct_threshold_tokens: int | None = option(
        None, "mode=auto's threshold in tokens; overrides direct_threshold"
    )

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ValueError("max_iterations must be at least 1")
        if self.max_depth < 1:
            raise ValueError("max_depth must be at least 1 (1 = sub-calls are plain LM calls)")
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        _at_least("max_llm_calls", self.max_llm_calls, 1)
        _at_least("max_total_tokens", self.max_total_tokens, 1)
        _at_least("max_cost", self.max_cost, 0, strict=True)
        _at_least("run_timeout", self.run_timeout, 0, strict=True)
        _at_least("max_errors", self.max_errors, 1)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 0 < self.direct_threshold <= 1:
            raise ValueError(
                f"direct_threshold is a share of the root window in (0, 1], got "
                f"{self.direct_threshold!r} (a size in tokens: direct_threshold_tokens)"
            )
        _at_least("direct_threshold_tokens", self.direct_threshold_tokens, 1)


@dataclass(frozen=True)
class Repl:
    """Where model-written code runs, and what the root LM is told about it."""

    environment: Any = option(
        "auto",
        "where generated code runs: auto (the strongest isolation that works here: sandbox, "
        "else subprocess), local (in this process; trusted documents only), subprocess, "
        "sandbox, docker, or an Environment",
    )
    environment_kwargs: dict[str, Any] | None = option(None, "options of the environment")
    max_output_chars: int = option(
        DEFAULT_MAX_OUTPUT_CHARS, "REPL output shown to the root per turn, in characters"
    )
    repl_setup: str | None = option(
        None, "Python run in the REPL after the context loads and after every restart"
    )
    system_prompt: str | None = option(None, "replaces the root's system prompt template")
    tools: dict[str, HostFunction] = option(
        doc="host functions callable from REPL code, by name", factory=dict
    )
    tools_doc: str = option("", "how the root should use the tools (added to its prompt)")
    finish_hint: str | None = option(
        None,
        "how the engine's feedback tells the top-level root to finish, completing 'Continue "
        "with more code, or ...' (default: give FINAL(...) / FINAL_VAR(name) on its own "
        "line); for a form with its own convention (RLMModule: SUBMIT)",
    )

    def __post_init__(self) -> None:
        _at_least("max_output_chars", self.max_output_chars, 1)
        validate_environment(self.environment, self.environment_kwargs)  # names and types


@dataclass(frozen=True)
class History:
    """How the root's growing history is kept inside its window."""

    root_context_window: int | None = option(
        None, "the root model's input window in tokens (default: known models, else the client's)"
    )
    compaction_threshold: float = option(
        0.8, "compact the root's history when its prompt passes this share of the window"
    )
    keep_last_iterations: int = option(
        2, "iterations kept verbatim when older ones are folded into a summary"
    )
    prompt_caching: bool = option(
        True,
        "let providers cache the root history's stable prefix (Anthropic cache_control marks; "
        "OpenAI-compatible servers cache identical prefixes on their own)",
    )

    def __post_init__(self) -> None:
        _at_least("root_context_window", self.root_context_window, 1)
        if not 0 < self.compaction_threshold <= 1:
            raise ValueError(
                f"compaction_threshold must be in (0, 1], got {self.compaction_threshold!r}"
            )
        _at_least("keep_last_iterations", self.keep_last_iterations, 0)


@dataclass(frozen=True)
class Observability:
    """Where a run is recorded and shown."""

    logger: Any = option(None, "an RLMLogger (or compatible) that records every trajectory")
    verbose: bool = option(False, "print each turn, its code and output")
    on_event: EventHandler | None = option(None, "callback for progress events")
    tracer_provider: Any = option(
        None,
        "an OpenTelemetry TracerProvider: spans for the completion, its iterations, root "
        "calls, code cells, sub-calls and child RLMs (otel extra; default: on when the "
        "standard OTEL_* exporter variables are set)",
    )


#: The groups of :class:`RLMConfig`, by attribute name.
GROUPS: dict[str, type] = {
    "models": Models,
    "reply": ReplyLimits,
    "run": RunLimits,
    "repl": Repl,
    "history": History,
    "observe": Observability,
}


def _index() -> dict[str, str]:
    index: dict[str, str] = {}
    for group, cls in GROUPS.items():
        for f in dataclasses.fields(cls):
            if f.name in index or f.name in GROUPS:
                raise AssertionError(f"config option {f.name!r} is defined twice")
            index[f.name] = group
    return index


#: Every option name and the group that holds it.
OPTION_GROUP: dict[str, str] = _index()


@dataclass(frozen=True)
class OptionInfo:
    """One option as entry points see it: for CLI flags, field docs and tests."""

    name: str
    group: str
    default: Any
    type: Any
    doc: str


def options() -> dict[str, OptionInfo]:
    """Every option, in group order, with its default, resolved type and doc."""
    out: dict[str, OptionInfo] = {}
    for group, cls in GROUPS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.default_factory is not dataclasses.MISSING:
                default: Any = f.default_factory()
            else:
                default = f.default
            out[f.name] = OptionInfo(f.name, group, default, hints[f.name], f.metadata["doc"])
    return out


def unknown_option_error(names: Any, where: str = "RLMConfig") -> TypeError:
    """A TypeError naming the unknown options and the closest known ones."""
    bad = sorted(names)
    hints = []
    for name in bad:
        close = difflib.get_close_matches(name, list(OPTION_GROUP), n=1)
        if close:
            hints.append(f"{name!r} -> did you mean {close[0]!r}?")
    if {"max_tokens", "timeout"} & set(bad):
        hints.append("max_tokens/timeout are per reply; whole-run: max_total_tokens/run_timeout")
    return TypeError(
        f"{where} got unknown option(s) {bad}"
        + (f" ({'; '.join(hints)})" if hints else "")
        + ". Options are listed in rlm_engine.config."
    )


@dataclass(frozen=True, init=False)
class RLMConfig:
    """Everything that defines an RLM: six groups, also settable flat by option name.

    ``RLMConfig(max_iterations=10, environment="docker")`` and
    ``RLMConfig(run=RunLimits(max_iterations=10), repl=Repl(environment="docker"))`` are
    the same configuration; flat options win over a group passed alongside. Read options
    through their group (``config.run.max_iterations``) or flat with ``config[name]``.
    Immutable: :meth:`replace` returns a changed copy.
    """

    models: Models
    reply: ReplyLimits
    run: RunLimits
    repl: Repl
    history: History
    observe: Observability

    def __init__(
        self,
        *,
        models: Models | None = None,
        reply: ReplyLimits | None = None,
        run: RunLimits | None = None,
        repl: Repl | None = None,
        history: History | None = None,
        observe: Observability | None = None,
        **options: Any,
    ) -> None:
        given = {
            "models": models,
            "reply": reply,
            "run": run,
            "repl": repl,
            "history": history,
            "observe": observe,
        }
        for name, value in given.items():
            if value is not None and not isinstance(value, GROUPS[name]):
                raise TypeError(
                    f"RLMConfig({name}=...) takes a {GROUPS[name].__name__}, got {value!r}"
                )
        per_group = _split(options)
        for name, cls in GROUPS.items():
            group = given[name] or cls()
            if per_group.get(name):
                group = dataclasses.replace(group, **per_group[name])
            object.__setattr__(self, name, group)

    def replace(self, **options: Any) -> RLMConfig:
        """A copy with ``options`` (flat names) changed."""
        if not options:
            return self
        per_group = _split(options)
        groups = {
            name: dataclasses.replace(getattr(self, name), **per_group[name])
            if name in per_group
            else getattr(self, name)
            for name in GROUPS
        }
        return RLMConfig(**groups)

    def __getitem__(self, name: str) -> Any:
        """An option by its flat name: ``config["max_iterations"]``."""
        try:
            group = OPTION_GROUP[name]
        except KeyError:
            raise unknown_option_error([name]) from None
        return getattr(getattr(self, group), name)

    def to_options(self) -> dict[str, Any]:
        """Every option, flat, by name (the inverse of ``RLMConfig(**options)``)."""
        return {name: self[name] for name in OPTION_GROUP}


def _split(options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    unknown = set(options) - set(OPTION_GROUP)
    if unknown:
        raise unknown_option_error(unknown)
    per_group: dict[str, dict[str, Any]] = {}
    for name, value in options.items():
        per_group.setdefault(OPTION_GROUP[name], {})[name] = value
    return per_group


def make_config(config: RLMConfig | None = None, **options: Any) -> RLMConfig:
    """``config`` (default: all defaults) with ``options`` applied: every entry point's
    "a ready config, keyword options, or both"."""
    if config is not None and not isinstance(config, RLMConfig):
        raise TypeError(f"config must be an RLMConfig, got {type(config).__name__}")
    return (config or RLMConfig()).replace(**options)


__all__ = [
    "GROUPS",
    "MODES",
    "OPTION_GROUP",
    "EventHandler",
    "History",
    "Models",
    "Observability",
    "OptionInfo",
    "RLMConfig",
    "Repl",
    "ReplyLimits",
    "RunLimits",
    "make_config",
    "options",
    "unknown_option_error",
]
