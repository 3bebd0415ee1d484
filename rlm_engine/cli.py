"""The ``rlm`` command: ``rlm run`` answers a query, ``rlm view`` renders a trace to HTML,
``rlm bench`` runs the benchmark scripts of a checkout.

Exit codes are part of the interface so scripts can branch on them: 0 final answer, 2 no
answer within the limits (iterations, budget, timeout), 1 error, 64 usage error. Errors are
one ``rlm: error: ...`` line; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import traceback
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from rlm_engine.cli_options import OptionError, add_option_flags, options_from_args
from rlm_engine.clients import BACKENDS
from rlm_engine.config import RLMConfig

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_NO_ANSWER = 2
EXIT_USAGE = 64
EXIT_INTERRUPTED = 130

# Benchmarks that should run first; any other bench_*.py follows in name order.
BENCH_ORDER = ("bench_engine.py", "bench_environments.py")
_BINARY_SNIFF = 8192


class CLIError(Exception):
    """A failure the user can act on: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage; 2 means "no answer" here, so usage errors exit 64."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"rlm: error: {message}\n")


def _say(message: str) -> None:
    print(f"rlm: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- context


def _looks_binary(data: bytes) -> bool:
    return b"\x00" in data[:_BINARY_SNIFF]


def load_context(spec: str) -> str | list[str]:
    """``-`` is stdin, a file is one string, a directory is a list of its text files.

    Directory documents are sorted by relative path and start with a ``--- file: PATH ---``
    line, so the root LM can tell which file a passage came from. Hidden files and
    directories (``.git``) and binary files are skipped.
    """
    if spec == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise CLIError("--context - reads the context from stdin, but stdin is a terminal")
        return sys.stdin.read()
    path = Path(spec).expanduser()
    if not path.exists():
        raise CLIError(f"context not found: {spec}")
    if path.is_file():
        data = path.read_bytes()
        if _looks_binary(data):
            raise CLIError(f"context file looks binary (contains NUL bytes): {spec}")
        return data.decode("utf-8", errors="replace")
    if not path.is_dir():
        raise CLIError(f"context is neither a file nor a directory: {spec}")
    docs: list[str] = []
    skipped = 0
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path)
        if any(part.startswith(".") for part in rel.parts):
            continue
        try:
            data = f.read_bytes()
        except OSError as e:
            raise CLIError(f"cannot read {f}: {e.strerror or e}") from e
        if _looks_binary(data):
            skipped += 1
            continue
        docs.append(f"--- file: {rel.as_posix()} ---\n" + data.decode("utf-8", errors="replace"))
    if not docs:
        raise CLIError(f"no text files in directory {spec}")
    note = f"; skipped {skipped} binary file(s)" if skipped else ""
    plural = "s" if len(docs) != 1 else ""
    _say(f"context: {len(docs)} document{plural} from {spec}{note}")
    return docs


# ----------------------------------------------------------------------------- run


def choose_backend(args: argparse.Namespace) -> tuple[str, str]:
    """The backend to use and why (said on stderr, so a scripted answer is never a surprise)."""
    if args.backend:
        return args.backend, "--backend"
    if args.base_url:
        return "openai", "--base-url given"
    if os.environ.get("OPENAI_API_KEY"):
        return "openai", "OPENAI_API_KEY is set"
    if os.environ.get("RLM_API_URL"):
        return "openai", "RLM_API_URL is set"
    if os.environ.get("ANTHROPIC_API_KEY"):
        return "anthropic", "ANTHROPIC_API_KEY is set"
    return "scripted", "no OPENAI_API_KEY, RLM_API_URL or ANTHROPIC_API_KEY: offline scripted model"


def run_config(args: argparse.Namespace, backend: str) -> RLMConfig:
    """The engine configuration of ``rlm run``: the flags' options, the chosen backend,
    the API key from ``--api-key-env`` and the trace logger of ``--log-dir``."""
    from rlm_engine.logger import RLMLogger

    opts = dict(args.options)
    opts["backend"] = backend
    if backend == "scripted":  # the offline model has no server, key or retries
        for name in ("base_url", "max_retries", "timeout"):
            opts.pop(name, None)
    elif args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise CLIError(
                f"--api-key-env {args.api_key_env}: that environment variable is not set"
            )
        opts["api_key"] = key
    if args.log_dir:
        opts["logger"] = RLMLogger(args.log_dir)
    return RLMConfig(**opts)


def _summary_line(res: Any) -> str:
    from rlm_engine.progress import fmt_cost, fmt_seconds, fmt_tokens

    u = res.usage.total
    models = ", ".join(res.usage.by_model())  # shows what a server-chosen ("auto") model was
    return (
        f"{res.status} · {len(res.iterations)} iterations · {u.calls} LM calls "
        f"({res.usage.root.calls} root, {res.usage.sub.calls} sub) · "
        f"{fmt_tokens(u.total_tokens)} tokens · {fmt_cost(u.cost)} · {fmt_seconds(res.duration)}"
        + (f" · models: {models}" if models else "")
    )


def cmd_run(args: argparse.Namespace) -> int:
    from rlm_engine import RLM
    from rlm_engine.progress import Progress

    context = load_context(args.context)
    backend, why = choose_backend(args)
    if not args.quiet:
        _say(f"backend: {backend} ({why})")
    rlm = RLM(run_config(args, backend))
    logger = rlm.logger
    show_progress = not (args.quiet or args.verbose)
    progress = Progress(sys.stderr)
    if show_progress:
        with progress:
            res = rlm.completion(context, query=args.query, on_event=progress)
    else:
        res = rlm.completion(context, query=args.query)
    trace = getattr(logger, "last_path", None)

    if args.json:
        out = res.to_dict()
        out["backend"] = backend
        out["trace"] = str(trace) if trace else None
        print(json.dumps(out, indent=2, default=str))
    elif res.response is not None:
        print(res.response)
    elif res.partial_answer is not None and res.status != "error":
        print(res.partial_answer)

    if not args.quiet:
        if res.status != "error":  # an error is reported as its own single line below
            _say(_summary_line(res))
        if trace:
            _say(f"trace: {trace} (open it with: rlm view {trace} --open)")
    if res.status == "final":
        return EXIT_OK
    if res.status == "error":
        raise CLIError(res.error or "the completion failed")
    detail = f": {res.error}" if res.error else ""
    partial = "; printed the best partial answer" if res.partial_answer and not args.json else ""
    _say(f"no final answer within the limits ({res.status}){detail}{partial}")
    return EXIT_NO_ANSWER


# ----------------------------------------------------------------------------- view


def _resolve_trace(spec: str) -> Path:
    p = Path(spec).expanduser()
    if p.is_dir():
        traces = sorted(p.glob("*.jsonl"), key=lambda f: f.stat().st_mtime)
        if not traces:
            raise CLIError(f"no .jsonl trace files in directory {spec}")
        return traces[-1]
    if not p.exists():
        raise CLIError(f"trace file not found: {spec}")
    return p


def cmd_view(args: argparse.Namespace) -> int:
    from rlm_engine.viewer import TraceError, write_html

    trace = _resolve_trace(args.trace)
    try:
        out = write_html(trace, args.output)
    except TraceError as e:
        raise CLIError(str(e)) from e
    except OSError as e:
        raise CLIError(f"cannot write {args.output or trace.with_suffix('.html')}: {e}") from e
    print(out)
    if args.open and not webbrowser.open(out.resolve().as_uri()):
        _say(f"could not start a browser; open {out.resolve().as_uri()} yourself")
    return EXIT_OK


# ----------------------------------------------------------------------------- bench


_PACKAGE_CHECKOUT = Path(__file__).resolve().parent.parent


def find_benchmarks(start: Path | None = None, checkout: Path | None = _PACKAGE_CHECKOUT) -> Path:
    """``benchmarks/`` of a checkout: from ``start`` (the current directory) upwards, then
    in ``checkout``, the source tree the package runs from (editable installs)."""
    here = (start or Path.cwd()).resolve()
    candidates = [d / "benchmarks" for d in (here, *here.parents)]
    if checkout is not None:
        candidates.append(checkout / "benchmarks")
    for c in candidates:
        if c.is_dir() and any(c.glob("bench_*.py")):
            return c
    raise CLIError(
        "no benchmarks/ directory with bench_*.py scripts found (looked in the current "
        "directory, its parents and next to the rlm_engine package); run `rlm bench` from "
        "a checkout of the repository"
    )


def bench_scripts(bench_dir: Path, names: Sequence[str] = ()) -> list[Path]:
    found = {p.name: p for p in bench_dir.glob("bench_*.py")}
    order = [n for n in BENCH_ORDER if n in found] + sorted(
        n for n in found if n not in BENCH_ORDER
    )
    if names:
        wanted = [n if n.endswith(".py") else f"bench_{n.removeprefix('bench_')}.py" for n in names]
        missing = [n for n in wanted if n not in found]
        if missing:
            raise CLIError(
                f"unknown benchmark {', '.join(missing)}; available: {', '.join(order)}",
                EXIT_USAGE,
            )
        order = [n for n in order if n in wanted]
    return [found[n] for n in order]


def cmd_bench(args: argparse.Namespace) -> int:
    bench_dir = find_benchmarks()
    scripts = bench_scripts(bench_dir, args.names)
    failed: list[str] = []
    for script in scripts:
        print(f"\n== {script.name}{' --quick' if args.quick else ''}", flush=True)
        cmd = [sys.executable, str(script), *(["--quick"] if args.quick else [])]
        rc = subprocess.call(cmd, cwd=bench_dir.parent)
        if rc != 0:
            failed.append(f"{script.name} (exit {rc})")
    if failed:
        raise CLIError(f"benchmark failed: {', '.join(failed)}")
    return EXIT_OK


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rlm",
        description="Recursive Language Models: answer queries over contexts of any size.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="answer a query about a context",
        description="Answer --query about --context with an RLM and print the answer. Exit "
        "codes: 0 final answer, 2 no answer within the limits, 1 error, 64 usage error.",
    )
    run.add_argument(
        "--context",
        "-c",
        required=True,
        metavar="FILE|DIR|-",
        help="a text file, a directory (list of its text files) or - for stdin",
    )
    run.add_argument(
        "--query", "-q", help="the question (omit when the task is inside the context)"
    )
    add_option_flags(run, list(BACKENDS))
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")
    run.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )
    run.set_defaults(func=cmd_run)

    view = sub.add_parser("view", help="render a .jsonl trace as one self-contained HTML file")
    view.add_argument(
        "trace", metavar="TRACE", help="a .jsonl trace, or a directory (newest trace)"
    )
    view.add_argument("-o", "--output", metavar="OUT.html", help="default: TRACE with .html")
    view.add_argument("--open", action="store_true", help="open the result in a web browser")
    view.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    view.set_defaults(func=cmd_view)

    bench = sub.add_parser("bench", help="run the benchmark scripts in benchmarks/")
    bench.add_argument("names", nargs="*", metavar="NAME", help="only these (e.g. engine)")
    bench.add_argument("--quick", action="store_true", help="smaller, faster runs")
    bench.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    bench.set_defaults(func=cmd_bench)
    return parser


def _one_line(message: str, limit: int = 600) -> str:
    """Errors are one line: provider messages can span lines or embed whole responses."""
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.func is cmd_run:  # option values are usage errors, before any work
        try:
            args.options = options_from_args(args)
        except OptionError as e:
            parser.error(str(e))
    try:
        return args.func(args)
    except CLIError as e:
        if args.debug:
            traceback.print_exc()
        print(f"rlm: error: {_one_line(str(e))}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("rlm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        if args.debug:
            traceback.print_exc()
        message = _one_line(str(e)) or type(e).__name__
        print(f"rlm: error: {type(e).__name__}: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
