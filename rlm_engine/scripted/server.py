"""An OpenAI-, Anthropic-, Gemini- and Azure-compatible HTTP server around :class:`ScriptedModel`.

The real ``openai`` and ``anthropic`` SDKs talk to it over 127.0.0.1, so their retries,
streaming, timeouts and connection pooling run for real in tests, demos and benchmarks.
Stdlib only: a threaded HTTP/1.1 server with keep-alive, latency and fault injection,
and thread-safe metrics.

Run it for demos: ``python -m rlm_engine.scripted.server --port 8080``. It speaks every
protocol the package uses (the model's standard skills; ``--bare`` leaves them out), so an
RLM, RLMChatModel or DSPy program needs only its URL: ``RLM_API_URL`` (or ``base_url=``) for
the engine's clients, ``api_base=`` for a ``dspy.LM``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from rlm_engine.scripted import gemini_wire, wire
from rlm_engine.scripted.cache import PrefixCache, within
from rlm_engine.scripted.faults import Fault, FaultBook
from rlm_engine.scripted.model import Reply, Request, ScriptedModel
from rlm_engine.scripted.stats import RequestRecord, ServerStats

DEFAULT_MODELS = ["scripted-root", "scripted-sub"]
#: How the OpenAI-compatible routes present themselves: a plain server, vLLM
#: (``max_model_len`` at ``/v1/models``; prompt + ``max_tokens`` past it is refused) or
#: llama.cpp (``/props`` with ``n_ctx`` and the chat template; replies end at the window).
FLAVORS = ("openai", "vllm", "llamacpp")
#: The User-Agent of ``rlm_engine.clients.server_info``: its GETs are listed in
#: ``ScriptedServer.probes``, not in ``stats``, which counts the requests a run makes.
PROBE_AGENT = "rlm-engine-probe"
#: A chat template with no system role (Gemma 2's, shortened): llama.cpp reports it at
#: ``/props``, and a server applying it loses the system message.
SYSTEMLESS_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role "
    "not supported') }}{% endif %}{% for message in messages %}<start_of_turn>{{ message['role']"
    " }}\n{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
)
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_ROUTES = {
    "/v1/chat/completions": "openai",
    "/chat/completions": "openai",
    "/v1/messages": "anthropic",
    "/messages": "anthropic",
    "/v1/messages/count_tokens": "anthropic-count",
}


class ScriptedServer:
    """Serve a :class:`ScriptedModel` on ``host:port`` (port 0 picks a free one).

    Use as a context manager or call ``start()``/``stop()``. ``base_url`` is for the
    OpenAI SDK (it ends in ``/v1``); ``url`` is for the Anthropic SDK, which adds
    ``/v1/messages`` itself. ``latency`` delays every completion, in seconds.

    Behaviours of real local servers, off by default: ``strict_roles`` refuses two
    consecutive messages of one role with the 400 a strict chat template gives on vLLM or
    llama.cpp; ``max_reply_tokens`` caps every reply on the server's side (llama.cpp's
    ``n_predict``), whatever the request asks, reporting ``finish_reason: "length"``
    (Anthropic ``stop_reason: "max_tokens"``).
    """

    def __init__(
        self,
        model: ScriptedModel | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        models: Iterable[str] | None = None,
        context_window: int | None = None,
        strict_roles: bool = False,
        max_reply_tokens: int | None = None,
        token_delay: float = 0.0,
        flavor: str = "openai",
        drops_system: bool = False,
        report_usage: bool = True,
    ) -> None:
        if max_reply_tokens is not None and max_reply_tokens < 1:
            raise ValueError(f"max_reply_tokens must be >= 1, got {max_reply_tokens}")
        if flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {', '.join(FLAVORS)}, got {flavor!r}")
        #: Which server the OpenAI routes imitate (:data:`FLAVORS`); ``context_window`` is
        #: the window it reports and enforces (prompt and reply together for vllm/llamacpp).
        self.flavor = flavor
        #: Apply a chat template without a system role (Gemma on llama.cpp): system messages
        #: are silently left out of what the model reads; ``/props`` shows that template.
        self.drops_system = drops_system
        #: System messages the template dropped (the model never saw them).
        self.dropped_system = 0
        #: False: never send usage (no ``usage`` field, no usage chunk), like some servers.
        self.report_usage = report_usage
        #: Paths the window probe asked for (``rlm_engine.clients.server_info``).
        self.probes: list[str] = []
        #: Per completion request: path, query string, the auth and routing headers that
        #: came (``api-key``, ``authorization``, ``x-goog-api-key``, ``http-referer``,
        #: ``x-portkey-*``), the reply cap sent (``cap``) and the first message / system
        #: instruction as JSON (``first``, ``system``; clipped to 8,000 characters).
        self.wire_log: list[dict[str, Any]] = []
        self.model = model or ScriptedModel()
        #: Refuse requests whose roles do not alternate (``wire.check_alternation``).
        self.strict_roles = strict_roles
        #: Server-side cap on every reply's tokens (None: only the request's own cap).
        self.max_reply_tokens = max_reply_tokens
        #: Prompt tokens a completion may have (None: no limit). Longer prompts get the
        #: provider's own 400 context-length error, in the API's wire format.
        self.context_window = context_window
        #: Seconds between the events of a streamed reply (generation time per chunk): a
        #: client that closes the stream stops the generation at the next event.
        self.token_delay = token_delay
        #: Simulated provider prompt cache (OpenAI automatic, Anthropic cache_control).
        self.prompt_cache = PrefixCache()
        self.host = host
        self.models = list(models or DEFAULT_MODELS)
        self.latency = latency
        self.stats = ServerStats()
        self.verbose = False
        self._requested_port = port
        self._model_latency: dict[str, float] = {}
        self._faults = FaultBook()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> ScriptedServer:
        """Bind and serve in a background thread; returns self. Idempotent."""
        if self._httpd is not None:
            return self
        self._stopping = threading.Event()
        httpd = _HTTPServer((self.host, self._requested_port), _Handler)
        httpd.app = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"scripted-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end hanging requests and close every open connection."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:  # wakes handler threads blocked on keep-alive reads
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running; call start() or use `with server:`")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port`` (Anthropic SDK ``base_url``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://host:port/v1`` (OpenAI SDK ``base_url``)."""
        return f"{self.url}/v1"

    # --- behaviour -------------------------------------------------------------------

    def set_latency(self, seconds: float, model: str | None = None) -> None:
        """Delay every completion (``model=None``) or those of one model, in seconds."""
        if seconds < 0:
            raise ValueError(f"latency must be >= 0, got {seconds}")
        if model is None:
            self.latency = seconds
        else:
            self._model_latency[model] = seconds

    def latency_for(self, model: str) -> float:
        return self.latency + self._model_latency.get(model, 0.0)

    def inject(self, fault: Fault) -> Fault:
        """Make the next ``fault.times`` matching completion requests fail."""
        return self._faults.add(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def pending_faults(self) -> list[Fault]:
        return self._faults.pending()

    def reset_stats(self) -> None:
        self.stats.reset()

    # --- used by the handler ---------------------------------------------------------

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when the server is stopping."""
        return self._stopping.wait(seconds) if seconds > 0 else self._stopping.is_set()

    def _record(self, rec: RequestRecord) -> None:
        self.stats.add(rec)
        if self.verbose:
            print(
                f"{rec.method} {rec.path} {rec.status} model={rec.model} "
                f"tokens={rec.prompt_tokens}+{rec.completion_tokens} "
                f"{(rec.finished_at - rec.started_at) * 1000:.1f}ms"
                + (f" fault={rec.fault}" if rec.fault else ""),
                file=sys.stderr,
                flush=True,
            )


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() closes connections itself; never wait on hung handlers
    request_queue_size = 256  # many concurrent SDK connections must not overflow the backlog
    allow_reuse_address = True
    app: ScriptedServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one TCP connection serves many requests
    server_version = "ScriptedLM/1.0"
    disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms ACK stalls
    server: _HTTPServer
    _rec: RequestRecord  # the request being handled (one at a time per connection)
    _committed: bool

    def setup(self) -> None:
        super().setup()
        self.server.app._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.app._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines go through ``ScriptedServer.verbose``; headers never."""

    # --- GET -------------------------------------------------------------------------

    def do_GET(self) -> None:
        app = self.server.app
        path = urlsplit(self.path).path.rstrip("/") or "/"
        rec = self._begin("GET", path)
        if self.headers.get("User-Agent", "").startswith(PROBE_AGENT):
            app.probes.append(path)
            self._committed = True  # not a request of the run: kept out of stats
        try:
            if path in ("/v1/models", "/models"):
                data = [self._model_entry(m) for m in app.models]
                self._send_json(200, {"object": "list", "data": data})
            elif path == "/props" and app.flavor == "llamacpp":
                self._send_json(200, self._props())
            elif gemini_wire.model_path(path) is not None:
                rec.api = "gemini-model"
                model = gemini_wire.model_path(path) or ""
                self._send_json(
                    200,
                    {
                        "name": f"models/{model}",
                        "displayName": model,
                        "inputTokenLimit": app.context_window or 1_048_576,
                        "outputTokenLimit": 65_536,
                        "supportedGenerationMethods": ["generateContent"],
                    },
                )
            elif path in ("/", "/health"):
                self._send_json(200, {"status": "ok", "models": app.models})
            else:
                self._send_json(404, wire.openai_error(404, f"no route GET {path}"))
        finally:
            self._commit(0)

    def _model_entry(self, model: str) -> dict[str, Any]:
        """One ``/v1/models`` entry, as the flavor's server lists it."""
        app = self.server.app
        entry: dict[str, Any] = {
            "id": model,
            "object": "model",
            "created": 0,
            "owned_by": "scripted",
        }
        if app.flavor == "vllm" and app.context_window:
            entry.update(owned_by="vllm", root=model, parent=None, max_model_len=app.context_window)
        if app.flavor == "llamacpp":
            entry["owned_by"] = "llamacpp"
            if app.context_window:
                entry["meta"] = {"n_ctx_train": app.context_window, "vocab_type": 2}
        return entry

    def _props(self) -> dict[str, Any]:
        """llama.cpp's ``/props``: the window each slot runs with and the chat template."""
        app = self.server.app
        return {
            "default_generation_settings": {"n_ctx": app.context_window or 4096, "n_predict": -1},
            "total_slots": 1,
            "model_path": app.models[0],
            "chat_template": SYSTEMLESS_TEMPLATE if app.drops_system else CHATML_TEMPLATE,
        }

    # --- POST ------------------------------------------------------------------------

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        rec = self._begin("POST", path)
        try:
            self._post(path, rec)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away mid-response
        finally:
            self._commit(0)

    def _begin(self, method: str, path: str) -> RequestRecord:
        self._rec = RequestRecord(method, path, 0, time.time(), 0.0)
        self._committed = False
        return self._rec

    def _commit(self, status: int) -> None:
        """Record the request once, just before the client can see its outcome.

        Recording before the last bytes go out means a test that got its response can
        assert on ``stats`` right away, without racing the handler thread.
        """
        if self._committed:
            return
        self._committed = True
        self._rec.status = status or self._rec.status
        self._rec.finished_at = time.time()
        self.server.app._record(self._rec)

    def _route(self, path: str) -> tuple[str | None, str | None]:
        """``(route, model named by the path)``: the fixed routes, Azure's deployment paths
        (``/openai/deployments/{name}/chat/completions``, whose deployment is the model) and
        Gemini's ``/v1beta/models/{model}:generateContent``."""
        if path in _ROUTES:
            return _ROUTES[path], None
        parts = path.split("/")
        if (
            len(parts) == 6
            and parts[1:3] == ["openai", "deployments"]
            and parts[4:]
            == [
                "chat",
                "completions",
            ]
        ):
            return "azure", parts[3]
        gem = gemini_wire.split_path(path)
        if gem is not None:
            return f"gemini-{gem[1]}", gem[0]
        return None, None

    def _log_wire(self, path: str, body: Any) -> None:
        keep = ("api-key", "authorization", "x-goog-api-key", "http-referer", "x-title")
        headers = {
            k.lower(): v
            for k, v in self.headers.items()
            if k.lower() in keep or k.lower().startswith("x-portkey-")
        }
        entry: dict[str, Any] = {
            "path": path,
            "query": urlsplit(self.path).query,
            "headers": headers,
        }
        if isinstance(body, dict):
            config = body.get("generationConfig")
            caps = [body.get("max_tokens"), body.get("max_completion_tokens")]
            caps.append(config.get("maxOutputTokens") if isinstance(config, dict) else None)
            entry["cap"] = next((c for c in caps if c is not None), None)
            first = (body.get("messages") or body.get("contents") or [None])[0]
            entry["first"] = json.dumps(first)[:8000] if first is not None else ""
            system = body.get("systemInstruction") or body.get("system")
            entry["system"] = json.dumps(system)[:8000] if system is not None else ""
        self.server.app.wire_log.append(entry)

    def _post(self, path: str, rec: RequestRecord) -> None:
        app = self.server.app
        route, path_model = self._route(path)
        try:
            raw = self._read_body()
        except ValueError as e:
            self._send_json(400, wire.openai_error(400, str(e)))
            self.close_connection = True
            return
        if route is None:
            self._send_json(404, wire.openai_error(404, f"no route POST {path}"))
            return
        query = urlsplit(self.path).query
        if route == "azure" and "api-version=" not in query:
            self._send_json(404, {"error": {"code": "404", "message": "Resource not found"}})
            return
        api = (
            "anthropic"
            if route.startswith("anthropic")
            else "gemini"
            if route.startswith("gemini")
            else "openai"
        )
        rec.api = "openai" if api == "gemini" else api
        try:
            body = json.loads(raw)
            self._log_wire(path, body)
            if api == "anthropic":
                req = wire.parse_anthropic(body, count_only=route == "anthropic-count")
            elif api == "gemini":
                stream = route == "gemini-streamGenerateContent"
                req = gemini_wire.parse_gemini(body, path_model or "", stream)
            else:
                if route == "azure" and isinstance(body, dict):
                    body = {**body, "model": path_model}  # Azure serves the deployment
                req = wire.parse_openai(body)
        except json.JSONDecodeError as e:
            self._send_error(api, 400, f"the request body is not valid JSON: {e}")
            return
        except wire.BadRequest as e:
            self._send_error(api, 400, e.message, e.param)
            return
        rec.model, rec.stream, rec.last_user = req.model, req.stream, req.last_user[:200]
        if route == "anthropic-count":
            rec.api = "anthropic-count"  # not a completion: keep it out of token totals
            prompt_tokens, _ = app.model.usage_for(req, Reply())
            self._send_json(200, {"input_tokens": prompt_tokens})
            return

        if app.strict_roles:
            refusal = wire.alternation_error(req)
            if refusal is not None:
                rec.fault = "roles"
                self._send_error(api, 400, refusal)
                return
        if app.max_reply_tokens is not None:  # n_predict: the server's cap wins if lower
            asked = req.max_tokens or app.max_reply_tokens
            req.max_tokens = min(asked, app.max_reply_tokens)
        if app.drops_system and any(m.get("role") == "system" for m in req.messages):
            app.dropped_system += 1  # the template has no system role: the model never sees it
            req.messages = [m for m in req.messages if m.get("role") != "system"]

        if app.context_window is not None:
            prompt_tokens, _ = app.model.usage_for(req, Reply())
            if prompt_tokens > app.context_window:
                rec.fault = "context_length"
                self._send_context_error(api, prompt_tokens, app.context_window)
                return
            room = app.context_window - prompt_tokens
            if app.flavor == "vllm" and req.max_tokens is not None and req.max_tokens > room:
                rec.fault = "max_tokens"
                self._send_json(
                    400, _vllm_cap_error(req.max_tokens, app.context_window, prompt_tokens)
                )
                return
            if app.flavor in ("vllm", "llamacpp"):  # generation ends where the window does
                req.max_tokens = min(req.max_tokens or room, room)

        fault = app._faults.take(req)
        if fault is not None:
            rec.fault = fault.kind
            if app._wait(fault.delay):
                self._drop()
                return
            if fault.kind != "delay":
                self._fail(api, req, fault)
                return

        try:
            with app.stats.serving(req.model):
                reply = app.model.respond(req)
                usage = app.model.usage_for(req, reply)
                req.cache = within(app.prompt_cache.lookup(req), usage[0])
                outcome = self._generate(app.latency_for(req.model) + reply.latency)
        except Exception as e:  # a rule or skill raised: report it like an API failure
            traceback.print_exc(file=sys.stderr)
            self._send_error(api, 500, f"scripted model failed: {type(e).__name__}: {e}")
            return
        if outcome == "gone":  # as vLLM and llama.cpp do: stop generating for nobody
            rec.abandoned, rec.status, rec.prompt_tokens = True, 499, usage[0]
        if outcome != "done":
            self._drop()
            return
        rec.prompt_tokens, rec.completion_tokens = usage
        rec.finish_reason = reply.finish_reason
        rec.cached_tokens, rec.cache_write_tokens = req.cache
        if req.stream:
            self._stream(api, req, reply, usage)
        elif api == "anthropic":
            self._send_json(200, wire.anthropic_message(req, reply, usage))
        elif api == "gemini":
            self._send_json(200, gemini_wire.gemini_response(req, reply, usage))
        else:
            body = wire.openai_completion(req, reply, usage)
            if not app.report_usage:
                body.pop("usage", None)
            elif _wants_cost(req):
                body["usage"]["cost"] = reported_cost(usage)
            self._send_json(200, body)

    # --- faults ----------------------------------------------------------------------

    def _fail(self, api: str, req: Request, fault: Fault) -> int:
        app = self.server.app
        if fault.hang:
            app._wait(fault.hang_seconds)
            self._drop()
            return 0
        if fault.drop_connection:
            self._drop()
            return 0
        if fault.malformed:
            if req.stream:
                return self._stream_raw([b"data: {this is not json\n\n"])
            return self._send_bytes(200, b'{"id": "broken", "choices": [', "application/json")
        status = fault.status or 500
        headers = {}
        if fault.retry_after is not None:
            headers["retry-after"] = f"{fault.retry_after:g}"
            headers["retry-after-ms"] = f"{fault.retry_after * 1000:g}"
        message = fault.message or f"injected fault: HTTP {status}"
        return self._send_error(api, status, message, headers=headers)

    def _generate(self, seconds: float) -> str:
        """Spend ``seconds`` generating a reply: ``"done"``, ``"stopping"`` (the server is
        shutting down) or ``"gone"`` (the client closed the connection meanwhile, which
        real servers notice for non-streamed requests too, and stop)."""
        app = self.server.app
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if app._wait(min(left, 0.02)):
                return "stopping"
            if self._client_gone():
                return "gone"
        return "stopping" if app._wait(0) else "done"

    def _client_gone(self) -> bool:
        """Whether the client closed its end (readable, and nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _drop(self) -> None:
        """Close the connection without sending anything."""
        self.close_connection = True
        self._commit(0)
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # --- I/O -------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(1024).split(b";")[0].strip()
                size = int(size_line, 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = self.headers.get("Content-Length")
        try:
            n = int(length) if length else 0
        except ValueError:
            raise ValueError(f"invalid Content-Length header: {length!r}") from None
        if n < 0:
            raise ValueError(f"invalid Content-Length header: {length!r}")
        return self.rfile.read(n) if n else b""

    def _send_error(
        self,
        api: str,
        status: int,
        message: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> int:
        if api == "gemini":
            return self._send_json(status, gemini_wire.gemini_error(status, message), headers)
        body = (
            wire.anthropic_error(status, message)
            if api == "anthropic"
            else wire.openai_error(status, message, param)
        )
        return self._send_json(status, body, headers)

    def _send_context_error(self, api: str, tokens: int, window: int) -> int:
        """What OpenAI and Anthropic answer for a prompt past the window, word for word."""
        app = self.server.app
        if api == "anthropic":
            body = wire.anthropic_error(
                400, f"prompt is too long: {tokens} tokens > {window} maximum"
            )
        elif api == "gemini":
            body = gemini_wire.gemini_error(400, gemini_wire.overflow_message(tokens, window))
        elif app.flavor == "llamacpp":
            body = {
                "error": {
                    "code": 400,
                    "message": "the request exceeds the available context size, try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": tokens,
                    "n_ctx": window,
                }
            }
        else:
            body = {
                "error": {
                    "message": f"This model's maximum context length is {window} tokens. "
                    f"However, your messages resulted in {tokens} tokens. Please reduce the "
                    "length of the messages.",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            }
        return self._send_json(400, body)

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> int:
        return self._send_bytes(status, json.dumps(obj).encode(), "application/json", headers)

    def _send_bytes(
        self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> int:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("request-id", f"req_{uuid.uuid4().hex[:16]}")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self._commit(status)
        self.wfile.write(body)
        return status

    def _stream(self, api: str, req: Request, reply: Reply, usage: tuple[int, int]) -> int:
        if api == "anthropic":
            events: Iterable[bytes] = (
                f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                for name, data in wire.anthropic_stream(req, reply, usage)
            )
        elif api == "gemini":
            events = (
                f"data: {json.dumps(d)}\r\n\r\n".encode()
                for d in gemini_wire.gemini_stream(req, reply, usage)
            )
        else:
            chunks = wire.openai_stream(req, reply, usage)
            if not self.server.app.report_usage:
                chunks = _without_usage(chunks)
            elif _wants_cost(req):
                chunks = _with_cost(chunks, usage)
            events = (f"data: {d}\n\n".encode() for d in chunks)
        return self._stream_raw(events)

    def _stream_raw(self, events: Iterable[bytes]) -> int:
        """Send server-sent events with chunked encoding, so keep-alive survives a stream."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", f"req_{uuid.uuid4().hex[:16]}")
        self.end_headers()
        held: bytes | None = None  # the last event goes out after the request is recorded
        app = self.server.app
        for event in events:
            if held is not None:
                if app._wait(app.token_delay):
                    raise BrokenPipeError("the server is stopping")
                try:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(held), held))
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    self._rec.abandoned = True  # the client closed the stream: stop here
                    self._rec.status = 499  # nginx's "client closed request"
                    raise
                self._rec.events_sent += 1
            held = event
        self._commit(200)
        tail = b"%x\r\n%s\r\n" % (len(held), held) if held else b""
        self.wfile.write(tail + b"0\r\n\r\n")
        return 200


def _vllm_cap_error(cap: int, window: int, prompt: int) -> dict[str, Any]:
    """vLLM's 400 for a reply cap that does not fit beside the prompt, word for word."""
    message = (
        f"'max_tokens' or 'max_completion_tokens' is too large: {cap}. This model's maximum "
        f"context length is {window} tokens and your request has {prompt} input tokens "
        f"({cap} > {window} - {prompt}). None"
    )
    return {"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}}


#: USD per token of the cost reported to a request that asks OpenRouter's way
#: (``usage: {"include": true}``): a made-up price, far from any table's, so a test can
#: tell the provider's figure from the client's own.
REPORTED_COST_PER_TOKEN = 1e-5


def reported_cost(usage: tuple[int, int]) -> float:
    """The ``usage.cost`` the server reports for ``usage`` (prompt, completion tokens)."""
    return round(sum(usage) * REPORTED_COST_PER_TOKEN, 10)


def _wants_cost(req: Request) -> bool:
    asked = req.raw.get("usage")
    return isinstance(asked, dict) and asked.get("include") is True


def _with_cost(chunks: Iterable[str], usage: tuple[int, int]) -> Iterator[str]:
    """An OpenAI stream whose usage chunk carries OpenRouter's ``cost``."""
    for chunk in chunks:
        if chunk != "[DONE]":
            data = json.loads(chunk)
            if isinstance(data.get("usage"), dict):
                data["usage"]["cost"] = reported_cost(usage)
                chunk = json.dumps(data)
        yield chunk


def _without_usage(chunks: Iterable[str]) -> Iterator[str]:
    """An OpenAI stream as a server that never reports usage sends it."""
    for chunk in chunks:
        if chunk == "[DONE]":
            yield chunk
            continue
        data = json.loads(chunk)
        if not data.get("choices"):
            continue  # the usage chunk
        data.pop("usage", None)
        yield json.dumps(data)


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C: ``python -m rlm_engine.scripted.server --port 8080``."""
    parser = argparse.ArgumentParser(description="Scripted OpenAI/Anthropic-compatible LM server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per completion")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="names for /v1/models")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    parser.add_argument(
        "--bare",
        action="store_true",
        help="serve the model without its standard skills (LangChain tool calls and "
        "structured output, DSPy formats): only the RLM policies answer",
    )
    parser.add_argument(
        "--context-window",
        type=int,
        metavar="TOKENS",
        help="reject prompts longer than this with the provider's context-length error",
    )
    parser.add_argument(
        "--strict-roles",
        action="store_true",
        help="refuse two consecutive messages of one role with a 400, like a strict chat "
        "template on vLLM or llama.cpp",
    )
    parser.add_argument(
        "--max-reply-tokens",
        type=int,
        metavar="TOKENS",
        help="cap every reply at this many tokens on the server's side (llama.cpp's "
        "n_predict), reporting finish_reason 'length' / stop_reason 'max_tokens'",
    )
    parser.add_argument(
        "--token-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds between the events of a streamed reply; a client that closes the "
        "stream stops the generation, as on vLLM and llama.cpp",
    )
    parser.add_argument(
        "--flavor",
        choices=FLAVORS,
        default="openai",
        help="imitate vLLM (max_model_len at /v1/models, prompt + max_tokens past the window "
        "refused) or llama.cpp (/props n_ctx and chat template); the window is "
        "--context-window",
    )
    parser.add_argument(
        "--drops-system",
        action="store_true",
        help="apply a chat template without a system role (Gemma on llama.cpp): system "
        "messages are silently dropped",
    )
    parser.add_argument(
        "--no-usage", action="store_true", help="never report usage, like some local servers"
    )
    args = parser.parse_args(argv)
    model = ScriptedModel(skills=not args.bare)
    server = ScriptedServer(
        model,
        host=args.host,
        port=args.port,
        latency=args.latency,
        models=args.models,
        context_window=args.context_window,
        strict_roles=args.strict_roles,
        max_reply_tokens=args.max_reply_tokens,
        token_delay=args.token_delay,
        flavor=args.flavor,
        drops_system=args.drops_system,
        report_usage=not args.no_usage,
    )
    server.verbose = not args.quiet
    with server:
        print(f"Scripted LM server on {server.base_url} (models: {', '.join(server.models)})")
        print(f"  export RLM_API_URL={server.base_url}   # Anthropic SDK: base_url={server.url}")
        print("Ctrl-C to stop.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
