"""``rlm batch INPUT.jsonl --out RESULTS.jsonl``: one completion per row, locally or on Ray.

The batch flags are here; the engine's flags are the ones ``rlm run`` has (generated in
:mod:`rlm_engine.cli_options`), and the backend is chosen the same way. The input, the
options and the results file are checked before any LM call. Exit codes: 0 every row has
a final answer, 2 some row ended without one (limits), 1 some row failed with an error,
64 usage error (bad flags, a bad input row), 130 interrupted (the rows written so far
stay; rerun to resume).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Any

from rlm_engine.batch.api import DEFAULT_BATCH_CONCURRENCY, EXECUTORS
from rlm_engine.cli_options import OptionError, add_option_flags, key_values

#: Failed rows whose error is printed at the end (all are in the results file).
SHOWN_FAILURES = 5


def _rate_limits(pairs: list[str] | None) -> dict[str, Any]:
    """``--model-rate-limit MODEL=RPM[/TPM]`` pairs (``-`` for no limit on one of them)."""
    from rlm_engine.clients.rate_limit import RateLimit

    limits: dict[str, Any] = {}
    for model, value in key_values(pairs, "--model-rate-limit").items():
        rpm, _, tpm = str(value).partition("/")
        try:
            limits[model] = RateLimit(
                None if rpm in ("", "-") else float(rpm), None if tpm in ("", "-") else float(tpm)
            )
        except ValueError as e:
            raise OptionError(
                f"--model-rate-limit {model}={value}: expected RPM[/TPM]; {e}"
            ) from None
    return limits


def add_batch_parser(sub: Any) -> None:
    """Register ``rlm batch`` on the ``rlm`` subparsers."""
    from rlm_engine.clients import BACKENDS

    epilog = textwrap.fill(
        "Each input line is a JSON object: id, context (inline) or context_path (a file, "
        "relative to the input's directory, read where the row runs), query, and optionally "
        "expected. Every row is written to --out exactly once; rerunning the same command "
        "skips the ids already there (resume after a crash or Ctrl-C). Exit codes: 0 every "
        "row final; 2 some row without a final answer; 1 some row failed; 64 usage error; "
        "130 interrupted.",
        width=78,
        break_on_hyphens=False,
    )
    p = sub.add_parser(
        "batch",
        help="one completion per row of a .jsonl file, locally or on Ray",
        description="Answer every row of INPUT.jsonl with an RLM and write RESULTS.jsonl.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT.jsonl", help="the rows, one JSON object a line")
    p.add_argument(
        "--out", "-o", required=True, metavar="RESULTS.jsonl", help="results, one line a row"
    )
    b = p.add_argument_group("batch")
    b.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: one event loop here; ray: one Ray task per row (default: local)",
    )
    b.add_argument(
        "--address",
        metavar="ADDR",
        help="Ray cluster to join: auto or ray://HOST:10001 (default: start a local one)",
    )
    b.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_BATCH_CONCURRENCY,
        metavar="N",
        help=f"rows in flight at once (default: {DEFAULT_BATCH_CONCURRENCY})",
    )
    b.add_argument(
        "--requests-per-minute",
        "--rpm",
        type=float,
        metavar="N",
        help="LM requests per minute, per model, for the whole batch (default: no limit)",
    )
    b.add_argument(
        "--tokens-per-minute",
        "--tpm",
        type=float,
        metavar="N",
        help="LM tokens (prompt + reply) per minute, per model, for the whole batch",
    )
    b.add_argument(
        "--model-rate-limit",
        action="append",
        metavar="MODEL=RPM[/TPM]",
        help="one model's own limits, repeatable (e.g. gpt-5-mini=500/200000)",
    )
    b.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    b.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")
    add_option_flags(p, list(BACKENDS))
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_batch)


def cmd_batch(args: argparse.Namespace) -> int:
    from rich.console import Console

    from rlm_engine.batch import OutputError, RowError, run_batch
    from rlm_engine.cli import (
        EXIT_ERROR,
        EXIT_NO_ANSWER,
        EXIT_OK,
        EXIT_USAGE,
        CLIError,
        _say,
        choose_backend,
        run_config,
    )

    if args.address and args.executor != "ray":
        raise CLIError("--address names a Ray cluster: add --executor ray", EXIT_USAGE)
    if args.concurrency < 1:
        raise CLIError("--concurrency must be at least 1", EXIT_USAGE)
    try:
        per_model = _rate_limits(args.model_rate_limit)
        from rlm_engine.clients.rate_limit import RateLimit

        RateLimit(args.requests_per_minute, args.tokens_per_minute)  # checks the values
    except (OptionError, ValueError) as e:
        raise CLIError(str(e), EXIT_USAGE) from None
    backend, why = choose_backend(args)
    if not args.quiet:
        _say(f"backend: {backend} ({why})")
    config = run_config(args, backend)
    try:
        summary = run_batch(
            args.input,
            executor=args.executor,
            address=args.address,
            concurrency=args.concurrency,
            out=args.out,
            requests_per_minute=args.requests_per_minute,
            tokens_per_minute=args.tokens_per_minute,
            model_rate_limits=per_model,
            progress=not args.quiet,
            config=config,
        )
    except (RowError, OutputError) as e:
        raise CLIError(str(e), EXIT_USAGE) from None
    if not args.quiet:
        Console(file=sys.stderr).print(summary.table())
    failed = [r for r in summary.results if r.status == "error"]
    for r in failed[:SHOWN_FAILURES]:  # shown even with --quiet, like rlm run's errors
        _say(f"row {r.id} failed: {r.error}")
    if len(failed) > SHOWN_FAILURES:
        _say(
            f"... and {len(failed) - SHOWN_FAILURES} more failed rows (status error in {args.out})"
        )
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    if summary.failed:
        return EXIT_ERROR
    if any(r.status != "final" for r in summary.results):
        return EXIT_NO_ANSWER
    return EXIT_OK


__all__ = ["add_batch_parser", "cmd_batch"]
