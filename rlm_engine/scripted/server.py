"""An OpenAI- and Anthropic-compatible HTTP server around :class:`ScriptedModel`.

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
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from rlm_engine.scripted import wire
from rlm_engine.scripted.cache import PrefixCache
from rlm_engine.scripted.faults import Fault, FaultBook
from rlm_engine.scripted.model import Reply, Request, ScriptedModel
from rlm_engine.scripted.stats import RequestRecord, ServerStats

DEFAULT_MODELS = ["scripted-root", "scripted-sub"]

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
    ) -> None:
        if max_reply_tokens is not None and max_reply_tokens < 1:
            raise ValueError(f"max_reply_tokens must be >= 1, got {max_reply_tokens}")
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
        self._begin("GET", path)
        try:
            if path in ("/v1/models", "/models"):
                data = [
                    {"id": m, "object": "model", "created": 0, "owned_by": "scripted"}
                    for m in app.models
                ]
                self._send_json(200, {"object": "list", "data": data})
            elif path in ("/", "/health"):
                self._send_json(200, {"status": "ok", "models": app.models})
            else:
                self._send_json(404, wire.openai_error(404, f"no route GET {path}"))
        finally:
            self._commit(0)

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

    def _post(self, path: str, rec: RequestRecord) -> None:
        app = self.server.app
        route = _ROUTES.get(path)
        try:
            raw = self._read_body()
        except ValueError as e:
            self._send_json(400, wire.openai_error(400, str(e)))
            self.close_connection = True
            return
        if route is None:
            self._send_json(404, wire.openai_error(404, f"no route POST {path}"))
            return
        api = "anthropic" if route.startswith("anthropic") else "openai"
        rec.api = api
        try:
            body = json.loads(raw)
            if api == "anthropic":
                req = wire.parse_anthropic(body, count_only=route == "anthropic-count")
            else:
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

        if app.context_window is not None:
            prompt_tokens, _ = app.model.usage_for(req, Reply())
            if prompt_tokens > app.context_window:
                rec.fault = "context_length"
                self._send_context_error(api, prompt_tokens, app.context_window)
                return

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
                req.cache = app.prompt_cache.lookup(req)
                stopping = app._wait(app.latency_for(req.model) + reply.latency)
        except Exception as e:  # a rule or skill raised: report it like an API failure
            traceback.print_exc(file=sys.stderr)
            self._send_error(api, 500, f"scripted model failed: {type(e).__name__}: {e}")
            return
        if stopping:
            self._drop()
            return
        rec.prompt_tokens, rec.completion_tokens = usage
        rec.finish_reason = reply.finish_reason
        rec.cached_tokens, rec.cache_write_tokens = req.cache
        if req.stream:
            self._stream(api, req, reply, usage)
        elif api == "anthropic":
            self._send_json(200, wire.anthropic_message(req, reply, usage))
        else:
            self._send_json(200, wire.openai_completion(req, reply, usage))

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
        body = (
            wire.anthropic_error(status, message)
            if api == "anthropic"
            else wire.openai_error(status, message, param)
        )
        return self._send_json(status, body, headers)

    def _send_context_error(self, api: str, tokens: int, window: int) -> int:
        """What OpenAI and Anthropic answer for a prompt past the window, word for word."""
        if api == "anthropic":
            body = wire.anthropic_error(
                400, f"prompt is too long: {tokens} tokens > {window} maximum"
            )
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
            events = (
                f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                for name, data in wire.anthropic_stream(req, reply, usage)
            )
        else:
            events = (f"data: {d}\n\n".encode() for d in wire.openai_stream(req, reply, usage))
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
