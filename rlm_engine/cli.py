"""The ``rlm`` command: ``rlm run`` answers a query, ``rlm chat`` holds a conversation
(:mod:`rlm_engine.cli_chat`), ``rlm view`` renders a trace to HTML, ``rlm bench`` runs the
benchmark scripts of a checkout, ``rlm eval`` compares direct calls and RLMs
(:mod:`rlm_engine.cli_eval`).

Exit codes are part of the interface so scripts can branch on them: 0 final answer, 2 no
answer within the limits (iterations, budget, timeout), 1 error, 64 usage error, 130
interrupted (Ctrl-C; the trace, if any, ends with an ``interrupted`` result line and its
path is printed). Errors are one ``rlm: error: ...`` line; ``--debug`` shows the traceback
instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import textwrap
import traceback
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rlm_engine.cli_options import OptionError, add_option_flags, options_from_args
from rlm_engine.clients import BACKENDS
from rlm_engine.config import RLMConfig, RunLimits, options

if TYPE_CHECKING:
    from rlm_engine import RLMResult
    from rlm_engine.logger import IterationRecorder
    from rlm_engine.session import RLMSession

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


def _text(data: bytes, source: str) -> str:
    """A file's or stdin's bytes as text, the same way for both: UTF-8, undecodable bytes
    replaced (U+FFFD) rather than failing the run. Binary data (NUL bytes) is refused."""
    if _looks_binary(data):
        raise CLIError(f"context {source} looks binary (contains NUL bytes)")
    return data.decode("utf-8", errors="replace")


def _empty(source: str) -> CLIError:
    return CLIError(
        f"the context is empty: {source} has no text, so there is nothing to ask about "
        "(no LM was called)",
        EXIT_USAGE,
    )


def load_context(spec: str) -> str | list[str]:
    """``-`` is stdin, a file is one string, a directory is a list of its text files.

    Directory documents are sorted by relative path and start with a ``--- file: PATH ---``
    line, so the root LM can tell which file a passage came from. Hidden files and
    directories (``.git``) and binary files are skipped. A context with no text (an empty
    file or stdin, or only whitespace) is a usage error: a run over it would pay for root
    calls that can only answer that there is nothing there.
    """
    if spec == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise CLIError("--context - reads the context from stdin, but stdin is a terminal")
        text = _text(sys.stdin.buffer.read(), "on stdin")
        if not text.strip():
            raise _empty("stdin")
        return text
    path = Path(spec).expanduser()
    if not path.exists():
        raise CLIError(f"context not found: {spec}")
    if path.is_file():
        text = _text(path.read_bytes(), f"file {spec}")
        if not text.strip():
            raise _empty(spec)
        return text
    if not path.is_dir():
        raise CLIError(f"context is neither a file nor a directory: {spec}")
    docs: list[str] = []
    skipped = 0
    has_text = False
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
        text = _text(data, str(f))
        has_text = has_text or bool(text.strip())
        docs.append(f"--- file: {rel.as_posix()} ---\n" + text)
    if not docs:
        raise CLIError(f"no text files in directory {spec}")
    if not has_text:
        raise _empty(f"every text file in {spec}")
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


def _of(used: str, limit: float | None, shown: str) -> str:
    return used if limit is None else f"{used} of {shown}"


def _summary_line(res: RLMResult, limits: RunLimits) -> str:
    """What the run used, against the budgets in force (so a default cap is never a surprise)."""
    from rlm_engine.progress import fmt_cost, fmt_seconds, fmt_tokens

    u = res.usage.total
    models = ", ".join(res.usage.by_model())  # shows what a server-chosen ("auto") model was
    calls = _of(f"{u.calls:,}", limits.max_llm_calls, f"{limits.max_llm_calls or 0:,}")
    tokens = _of(
        fmt_tokens(u.total_tokens), limits.max_total_tokens, fmt_tokens(limits.max_total_tokens)
    )
    if u.cost is None:  # no known price: the cost budget cannot apply
        cost = "cost n/a" + (f" (budget {fmt_cost(limits.max_cost)})" if limits.max_cost else "")
    else:
        cost = _of(fmt_cost(u.cost), limits.max_cost, fmt_cost(limits.max_cost))
    return (
        f"{res.status} · {len(res.iterations)} iterations · {calls} LM calls "
        f"({res.usage.root.calls} root, {res.usage.sub.calls} sub) · {tokens} tokens · "
        f"{cost} · {fmt_seconds(res.duration)}"
        + (f" · environment: {res.environment}" if res.environment else "")
        + (f" · path: {res.path} ({res.path_reason})" if limits.mode != "rlm" else "")
        + (f" · models: {models}" if models else "")
    )


def _say_estimate(session: RLMSession, limits: RunLimits) -> None:
    """Before a large run: its size, what reading it once takes, and the budgets."""
    from rlm_engine.clients.base import price_for
    from rlm_engine.estimate import estimate

    sub = session.shared.sub_client
    chars = int(session.state.context_info.get("total_chars") or 0)
    est = estimate(chars, sub.context_chars, limits, price_for(sub.model_name))
    if est.large:
        for line in est.lines():
            _say(line)


def _fan_out(*handlers: Any) -> Any:
    def on_event(event: dict[str, Any]) -> None:
        for handler in handlers:
            handler(event)

    return on_event


async def _drive(
    args: argparse.Namespace,
    config: RLMConfig,
    context: str | list[str],
    progress: Any,
    recorder: IterationRecorder,
) -> RLMResult:
    """One completion, as ``RLM.acompletion`` runs it, plus what the command adds: the
    estimate before a large run, and on Ctrl-C (the task is cancelled) the trace's
    ``interrupted`` ending with the iteration in progress."""
    from rlm_engine import direct
    from rlm_engine.inputs import check_material
    from rlm_engine.resources import RunResources
    from rlm_engine.session import RLMSession, run

    show_progress = not (args.quiet or args.verbose)
    handlers = (recorder, progress) if show_progress else (recorder,)
    check_material(context, args.query)
    shared = RunResources(config, on_event=_fan_out(*handlers))

    async def loop(path_reason: str) -> RLMResult:  # --mode: unless one direct call answers
        session = await RLMSession.open(config, context, args.query, shared=shared)
        session.state.path_reason = path_reason
        try:
            if not args.quiet:
                _say_estimate(session, config.run)
            with progress if show_progress else contextlib.nullcontext():
                return await run(session)
        except asyncio.CancelledError:
            if config.observe.logger is not None:
                config.observe.logger.log_interrupted(session, recorder.partial())
            raise
        finally:
            await session.close()

    try:
        return await direct.complete(config, shared, context, args.query, rlm=loop)
    finally:
        await shared.aclose()


def _interrupted(trace: Path | None) -> int:
    where = (
        f"; the partial trace is {trace} (open it with: rlm view {trace} --open)" if trace else ""
    )
    _say(f"interrupted (Ctrl-C){where}")
    return EXIT_INTERRUPTED


def cmd_run(args: argparse.Namespace) -> int:
    from rlm_engine.logger import IterationRecorder
    from rlm_engine.progress import Progress

    context = load_context(args.context)
    backend, why = choose_backend(args)
    if not args.quiet:
        _say(f"backend: {backend} ({why})")
    config = run_config(args, backend)
    logger = config.observe.logger
    try:
        res = asyncio.run(_drive(args, config, context, Progress(sys.stderr), IterationRecorder()))
    except KeyboardInterrupt:
        return _interrupted(getattr(logger, "last_path", None))
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

    for warning in res.warnings:  # shown even with --quiet: the answer may not be trusted
        _say(f"warning: {warning}")
    if not args.quiet:
        if res.status != "error":  # an error is reported as its own single line below
            _say(_summary_line(res, config.run))
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


def run_epilog() -> str:
    """Defaults that decide what a run may spend, and the exit codes, from the config."""
    from rlm_engine.estimate import LARGE_CONTEXT_CHARS, budget_words

    defaults = options()
    limits = RunLimits()
    text = (
        f"Budgets, on by default for every run: {', '.join(budget_words(limits))} (cost where "
        f"prices are known); each LM request ends within --timeout "
        f"({defaults['timeout'].default:g} s, retries included). Raise a budget with its flag "
        f"or remove it with none (--max-cost none). A context over "
        f"{LARGE_CONTEXT_CHARS:,} characters gets an estimate on stderr before the run. "
        f"Exit codes: {EXIT_OK} final answer; {EXIT_NO_ANSWER} no answer within the limits "
        f"(the best partial answer is printed); {EXIT_ERROR} error; {EXIT_USAGE} usage error "
        f"(bad flags, an empty context); {EXIT_INTERRUPTED} interrupted by Ctrl-C (the trace "
        "ends with an interrupted result line and its path is printed)."
    )
    # Wrapped here so a flag is never split at its hyphens (argparse would: "--max-\ncost").
    return textwrap.fill(text, width=78, break_on_hyphens=False)


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
        description="Answer --query about --context with an RLM and print the answer.",
        epilog=run_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the epilog is pre-wrapped
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
    run.add_argument(
        "--quiet",
        action="store_true",
        help="no progress, estimate or summary on stderr (errors and warnings still show)",
    )
    run.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )
    run.set_defaults(func=cmd_run)

    from rlm_engine.cli_chat import add_chat_parser  # imports this module: not at the top
    from rlm_engine.cli_eval import add_eval_parser

    add_chat_parser(sub)

    from rlm_engine.cli_batch import add_batch_parser  # imports this module: not at the top

    add_batch_parser(sub)
    add_eval_parser(sub)

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
    if args.command in ("run", "chat", "batch"):  # option values are usage errors, before any work
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
    # ``python -m rlm_engine.cli``: run the imported module, not this ``__main__`` copy, so
    # its classes (CLIError) are the ones rlm_engine.cli_chat raises.
    from rlm_engine import cli

    sys.exit(cli.main())
