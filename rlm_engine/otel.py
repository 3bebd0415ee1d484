"""OpenTelemetry spans for RLM runs, built from the engine's progress events.

Optional: needs the ``otel`` extra (``opentelemetry-api`` / ``-sdk``). Turned on by the
``tracer_provider`` option (``RLMConfig.observe``), or by the standard OpenTelemetry
environment variables: with ``OTEL_TRACES_EXPORTER`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set (and ``OTEL_SDK_DISABLED`` not true) the
process's global provider is used when the application configured one, else a provider is
made from those variables (``console`` or ``otlp``; ``OTEL_SERVICE_NAME`` names it).

The spans of one completion::

    invoke_agent rlm                      the completion (gen_ai.operation.name invoke_agent)
      rlm.iteration <n>                   one root turn
        chat <model>                      the root LM call (GenAI attributes, usage)
        execute_tool repl                 one code cell (error status when it raised)
          chat <model>                    a sub-call (llm_query...), rlm.function says which
          invoke_agent rlm                a child RLM (rlm_query), its iterations below it

A direct run (``mode="direct"|"auto"``) is ``invoke_agent rlm`` with one ``chat <model>``
span under it; when ``auto`` falls back to the loop, that run ends with an error and the
loop's run follows as a completion span of its own.

Model calls follow the GenAI semantic conventions (``gen_ai.operation.name``,
``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` /
``output_tokens`` / cache tokens, ``gen_ai.response.finish_reasons``); RLM attributes are
``rlm.depth``, ``rlm.iteration``, ``rlm.status``, ``rlm.cost``, ``rlm.function``. Texts
(prompts, replies, code, REPL output) are recorded only when
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` is true, as the GenAI conventions
ask, and then redacted and clipped like every trace (:mod:`rlm_engine.trace_content`).
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from typing import Any

from rlm_engine.subcalls import LM_FUNCTIONS
from rlm_engine.trace_content import TraceText

_ENV_ON = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)
_CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_SCOPE = "rlm_engine"
_made_provider: Any = None
_made_lock = threading.Lock()


def _true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def env_enabled() -> bool:
    """Whether the standard OTel environment variables ask for traces."""
    if _true("OTEL_SDK_DISABLED"):
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(os.environ.get(name) for name in _ENV_ON)


def _import_api() -> Any:
    try:
        from opentelemetry import trace
    except ImportError as e:  # pragma: no cover - the extra is installed in development
        raise ImportError(
            "OpenTelemetry tracing needs the otel extra: pip install 'rlm-integrations[otel]'"
        ) from e
    return trace


def _provider_from_env() -> Any:
    """The application's global provider when it set one, else one made from the env vars
    (once per process; it is not made global, so the application's own setup still wins)."""
    global _made_provider
    trace = _import_api()
    current = trace.get_tracer_provider()
    if type(current).__name__ not in ("ProxyTracerProvider", "NoOpTracerProvider"):
        return current
    with _made_lock:
        if _made_provider is None:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider = TracerProvider(resource=Resource.create())
            for name in _exporter_names():
                provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
            _made_provider = provider
    return _made_provider


def _exporter_names() -> list[str]:
    names = os.environ.get("OTEL_TRACES_EXPORTER", "otlp")
    return [n.strip().lower() for n in names.split(",") if n.strip() and n.strip() != "none"]


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: rlm_engine knows 'otlp' and 'console'")
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    wire = "grpc" if protocol.strip().lower() == "grpc" else "http"
    try:
        module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{wire}.trace_exporter")
    except ImportError as e:
        raise ImportError(
            "OTEL_TRACES_EXPORTER=otlp needs an OTLP exporter: pip install "
            "opentelemetry-exporter-otlp (or pass tracer_provider=...)"
        ) from e
    return module.OTLPSpanExporter()


def span_handler(
    tracer_provider: Any = None, secrets: list[str] | None = None
) -> SpanBuilder | None:
    """The OTel ``on_event`` handler for one completion, or None when tracing is off."""
    if tracer_provider is None:
        if not env_enabled():
            return None
        tracer_provider = _provider_from_env()
    return SpanBuilder(tracer_provider, secrets=secrets)


class SpanBuilder:
    """An ``on_event`` handler that turns one completion's events into OTel spans."""

    def __init__(self, tracer_provider: Any, *, secrets: list[str] | None = None) -> None:
        self._trace = _import_api()
        self._tracer = tracer_provider.get_tracer(_SCOPE)
        self._text = TraceText(secrets)
        self._content = _true(_CAPTURE)
        self._lock = threading.Lock()
        self._spans: dict[Any, Any] = {}  # ("run"|"iter"|"root"|"cell", run_id) / call id
        self._children: set[str] = set()
        self._parents: dict[Any, Any] = {}  # key -> parent key, to end children first

    # -- the handler ----------------------------------------------------------------------
    def __call__(self, e: dict[str, Any]) -> None:
        run = e.get("run_id")
        if run is None:
            return
        with self._lock:
            self._apply(str(run), e)

    def close_open(self, reason: str = "the run ended before this step finished") -> None:
        """End every span a stopped run left open, innermost first."""
        with self._lock:
            for key in list(self._spans):
                if key in self._spans:
                    self._end(key, error=reason)

    # -- events -----------------------------------------------------------------------------
    def _apply(self, run: str, e: dict[str, Any]) -> None:
        kind = e.get("event")
        depth = int(e.get("depth") or 0)
        session = self._session(run, e, depth)
        if kind == "iteration_start":
            for k in ("root", "cell", "iter"):
                self._end((k, run), error="superseded")
            n = int(e.get("iteration") or 0)
            it = self._start(("iter", run), session, f"rlm.iteration {n}", depth=depth)
            it.set_attribute("rlm.iteration", n)
            model = str(e.get("model") or "")
            root = self._start(("root", run), ("iter", run), f"chat {model}".strip(), depth=depth)
            _chat_attrs(root, model, "root")
            if self._content:
                root.set_attribute("rlm.prompt", self._text(e.get("prompt")))
        elif kind == "root_response":
            span = self._spans.get(("root", run))
            if span is not None:
                self._usage(span, e)
                if self._content:
                    span.set_attribute("rlm.reply", self._text(e.get("text")))
                self._end(("root", run))
        elif kind == "code_start":
            cell = self._start(("cell", run), ("iter", run), "execute_tool repl", depth=depth)
            cell.set_attribute("gen_ai.operation.name", "execute_tool")
            cell.set_attribute("gen_ai.tool.name", "repl")
            if self._content:
                cell.set_attribute("rlm.code", self._text(e.get("code")))
        elif kind == "code_end":
            cell = self._spans.get(("cell", run))
            if cell is not None:
                if self._content:
                    cell.set_attribute("rlm.output", self._text(e.get("output")))
                err = e.get("error")
                self._end(("cell", run), error=self._text(err) if err else None)
        elif kind == "subcall_start":
            self._start_call(run, e, depth)
        elif kind == "subcall_end":
            self._end_call(run, e, depth)
        elif kind == "iteration_end":
            span = self._spans.get(("iter", run))
            if span is not None:
                span.set_attribute("rlm.final", bool(e.get("final")))
            for k in ("root", "cell", "iter"):
                self._end((k, run))
        elif kind == "direct_start":  # mode direct/auto: the one LM call of a direct run
            model = str(e.get("model") or "")
            root = self._start(("root", run), session, f"chat {model}".strip(), depth=depth)
            _chat_attrs(root, model, "root")
            if self._content:
                root.set_attribute("rlm.prompt", self._text(e.get("prompt")))
        elif kind == "direct_end":
            span, err = self._spans.get(("root", run)), e.get("error")
            if span is not None:
                if err is None:
                    self._usage(span, e)
                    if self._content:
                        span.set_attribute("rlm.reply", self._text(e.get("text")))
                self._end(("root", run), error=self._text(err) if err else None)
            if e.get("fallback"):  # the loop answers, as a run of its own: this one ends
                self._end(session, error=str(err or "fell back to the RLM loop"))
        elif kind == "final":
            span = self._spans.get(session)
            if span is not None:
                status = str(e.get("status"))
                span.set_attribute("rlm.status", status)
                span.set_attribute("rlm.iterations", int(e.get("iteration") or 0))
                _usage_totals(span, e.get("usage") or {}, depth == 0)
                error = None if status == "final" else str(e.get("error") or status)
                for k in ("root", "cell", "iter"):
                    self._end((k, run), error=error)
                if isinstance(session, tuple):  # a child's span is its rlm_query call's
                    self._end(session, error=error)

    def _session(self, run: str, e: dict[str, Any], depth: int) -> Any:
        """The span a session's iterations go under: its child-RLM call, or its completion
        span (started at its first event, under whatever span is current then)."""
        call = e.get("parent_call")
        if call is not None and str(call) in self._spans:
            return str(call)
        key = ("run", run)
        if key not in self._spans:
            span = self._start(key, None, "invoke_agent rlm", depth=depth)
            span.set_attribute("gen_ai.operation.name", "invoke_agent")
            span.set_attribute("gen_ai.agent.name", "rlm")
        return key

    def _start_call(self, run: str, e: dict[str, Any], depth: int) -> None:
        parent = ("cell", run) if ("cell", run) in self._spans else ("iter", run)
        call, fn = str(e.get("call_id")), str(e.get("function") or "")
        model = str(e.get("model") or "")
        if e.get("child"):
            self._children.add(call)
            span = self._start(call, parent, "invoke_agent rlm", depth=depth + 1)
            span.set_attribute("gen_ai.operation.name", "invoke_agent")
            span.set_attribute("gen_ai.agent.name", "rlm")
        elif fn in LM_FUNCTIONS:
            span = self._start(call, parent, f"chat {model}".strip(), depth=depth + 1)
            _chat_attrs(span, model, fn)
        else:
            span = self._start(call, parent, f"execute_tool {fn}", depth=depth)
            span.set_attribute("gen_ai.operation.name", "execute_tool")
            span.set_attribute("gen_ai.tool.name", fn)
        span.set_attribute("rlm.function", fn)
        span.set_attribute("rlm.prompt_chars", int(e.get("prompt_chars") or 0))
        if self._content:
            span.set_attribute("rlm.prompt", self._text(e.get("prompt")))

    def _end_call(self, run: str, e: dict[str, Any], depth: int) -> None:
        call = str(e.get("call_id"))
        if call not in self._spans:
            if not e.get("replayed"):
                return
            self._start_call(run, e, depth)  # answered from a record: no call was made
            self._spans[call].set_attribute("rlm.replayed", True)
        span = self._spans[call]
        if call in self._children:
            span.set_attribute("rlm.cost", float(e.get("cost") or 0.0))
        elif str(e.get("function") or "") in LM_FUNCTIONS:
            self._usage(span, e)
        if self._content:
            span.set_attribute("rlm.reply", self._text(e.get("answer")))
        err = e.get("error")
        self._end(call, error=self._text(err) if err else None)

    # -- spans -----------------------------------------------------------------------------
    def _start(self, key: Any, parent: Any, name: str, *, depth: int) -> Any:
        trace = self._trace
        parent_span = self._spans.get(parent) if parent is not None else None
        context = trace.set_span_in_context(parent_span) if parent_span is not None else None
        kind = trace.SpanKind.CLIENT if name.startswith("chat") else trace.SpanKind.INTERNAL
        span = self._tracer.start_span(name, context=context, kind=kind, start_time=time.time_ns())
        span.set_attribute("rlm.depth", depth)
        self._spans[key] = span
        self._parents[key] = parent
        return span

    def _end(self, key: Any, error: str | None = None) -> None:
        for child in [k for k, p in self._parents.items() if p == key and k in self._spans]:
            self._end(child, error=error or "the step ended before this one finished")
        span = self._spans.pop(key, None)
        self._parents.pop(key, None)
        if span is None:
            return
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, error[:500]))
            span.set_attribute("error.type", "rlm_step_error")
        span.end(end_time=time.time_ns())

    @staticmethod
    def _usage(span: Any, e: dict[str, Any]) -> None:
        span.set_attribute("gen_ai.usage.input_tokens", int(e.get("input_tokens") or 0))
        span.set_attribute("gen_ai.usage.output_tokens", int(e.get("output_tokens") or 0))
        cached, written = (
            int(e.get("cached_input_tokens") or 0),
            int(e.get("cache_write_tokens") or 0),
        )
        if cached:
            span.set_attribute("gen_ai.usage.cache_read.input_tokens", cached)
        if written:
            span.set_attribute("gen_ai.usage.cache_creation.input_tokens", written)
        if e.get("model"):
            span.set_attribute("gen_ai.response.model", str(e.get("model")))
        reason = "length" if e.get("truncated") else ("error" if e.get("error") else "stop")
        span.set_attribute("gen_ai.response.finish_reasons", [reason])
        if e.get("cost") is not None:
            span.set_attribute("rlm.cost", float(e.get("cost") or 0.0))


def _chat_attrs(span: Any, model: str, role: str) -> None:
    span.set_attribute("gen_ai.operation.name", "chat")
    if model:
        span.set_attribute("gen_ai.request.model", model)
    span.set_attribute("rlm.role", "root" if role == "root" else "sub")


def _usage_totals(span: Any, usage: dict[str, Any], top: bool) -> None:
    """The whole run's usage on the top completion span (children included)."""
    if not top:
        return
    span.set_attribute("rlm.usage.input_tokens", int(usage.get("input_tokens") or 0))
    span.set_attribute("rlm.usage.output_tokens", int(usage.get("output_tokens") or 0))
    span.set_attribute("rlm.usage.calls", int(usage.get("calls") or 0))
    if usage.get("cost") is not None:
        span.set_attribute("rlm.cost", float(usage.get("cost") or 0.0))


__all__ = ["SpanBuilder", "env_enabled", "span_handler"]
