"""``rlm eval``: run the evaluation harness (:mod:`rlm_engine.evals`) from the command line.

``rlm eval`` with no flags runs every built-in suite at 8k, 32k, 128k, 512k and 2M tokens
with every arm (direct, rlm, rlm-d2, auto), three tasks per cell, on the backend ``rlm
run`` would pick (the offline scripted models without API keys). It prints the estimate
first and refuses to start when it is over ``--max-cost``; then one line per finished
run on stderr, the summary table on stdout, the ``mode="auto"`` threshold the results
support, and the paths of ``runs.jsonl`` and ``report.html`` in ``--out``. Run it again
with the same ``--out`` to resume.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rlm_engine.cli import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    _say,
    choose_backend,
    run_config,
)
from rlm_engine.cli_options import NO_LIMIT, OptionError, add_option_flags, options_from_args
from rlm_engine.clients import BACKENDS
from rlm_engine.evals.arms import ARMS
from rlm_engine.evals.runner import EXECUTORS
from rlm_engine.evals.suites import SUITES
from rlm_engine.evals.tasks import DEFAULT_SIZES, parse_size, size_label

DEFAULT_OUT = "rlm-eval"
DEFAULT_MAX_COST = 5.0


def _names(text: str, known: tuple[str, ...] | list[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise CLIError(
            f"unknown {what} {', '.join(bad) or repr(text)}; choose from {', '.join(known)}",
            EXIT_USAGE,
        )
    return names


def _max_cost(text: str) -> float | None:
    if text.strip().lower() == NO_LIMIT:
        return None
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"--max-cost must be > 0 (or {NO_LIMIT}), got {text}")
    return value


def cmd_eval(args: argparse.Namespace) -> int:
    from rlm_engine.evals import EvalSpec, run_eval
    from rlm_engine.evals.cost import CostGuardError
    from rlm_engine.evals.records import RunLog
    from rlm_engine.evals.runner import RUNS_FILE
    from rlm_engine.evals.user_suite import SuiteFileError

    out = Path(args.out)
    if args.report_only:
        metas, runs = RunLog(out / RUNS_FILE).read()
        if not runs:
            raise CLIError(f"no runs in {out / RUNS_FILE}: run rlm eval --out {out} first")
        records = list(runs.values())
        _finish(records, out, metas[-1] if metas else {}, args.quiet)
        return EXIT_OK
    try:
        args.options = options_from_args(args)
    except OptionError as e:
        raise CLIError(str(e), EXIT_USAGE) from e
    suites = (
        _names(args.suites, list(SUITES), "suite")
        if args.suites
        else ([] if args.suite_file else list(SUITES))
    )
    try:
        sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
        spec = EvalSpec(
            suites=suites,
            sizes=sizes,
            arms=_names(args.arms, ARMS, "arm"),
            tasks=args.tasks,
            seed=args.seed,
            suite_files=args.suite_file or (),
        )
    except ValueError as e:
        raise CLIError(str(e), EXIT_USAGE) from e
    backend, why = choose_backend(args)
    if not args.quiet:
        _say(f"backend: {backend} ({why})")
    config = run_config(args, backend)
    ignored = [f"--{n.replace('_', '-')}" for n in ("mode", "max_depth") if n in args.options]
    if ignored:
        _say(f"note: {' and '.join(ignored)} ignored: each arm sets them (--arms chooses)")

    def on_record(rec: Any, done: int, total: int) -> None:
        if args.quiet:
            return
        where = f"{rec.suite} {size_label(rec.size)} #{rec.index}"
        path = f" via {rec.path}" if rec.arm == "auto" and rec.path else ""
        cost = f" ${rec.cost:.4f}" if rec.cost else ""
        _say(
            f"[{done}/{total}] {rec.arm} {where}: {rec.status}{path} score {rec.score:.2f} {rec.latency:.1f}s{cost}"
        )

    try:
        result = run_eval(
            spec,
            config,
            out,
            max_cost=args.max_cost,
            concurrency=args.concurrency,
            retry_errors=args.retry_errors,
            executor=args.executor,
            dry_run=args.dry_run,
            on_record=on_record,
            on_estimate=lambda est: _say(est.line()) if not args.quiet else None,
        )
    except CostGuardError as e:
        raise CLIError(f"cost guard: {e}") from e
    except SuiteFileError as e:
        raise CLIError(str(e), EXIT_USAGE) from e
    except KeyboardInterrupt:
        _say(
            f"interrupted; finished runs are in {out / RUNS_FILE} (run the same command to resume)"
        )
        return EXIT_INTERRUPTED
    if args.dry_run:
        return EXIT_OK
    if result.resumed and not args.quiet:
        _say(f"resumed: {result.resumed} runs were already in {result.runs_path}")
    if result.stopped:
        _say(f"stopped: {result.stopped}")
    _finish(result.records, out, result.meta, args.quiet)
    return EXIT_OK


def _finish(records: list[Any], out: Path, meta: dict[str, Any], quiet: bool) -> None:
    from rlm_engine.evals.report import write_report
    from rlm_engine.evals.runner import REPORT_FILE, RUNS_FILE, SUMMARY_FILE
    from rlm_engine.evals.summary import format_table, recommend_threshold, summarize

    table = format_table(summarize(records))
    threshold = recommend_threshold(records)
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_FILE).write_text(
        table + "\n\nauto threshold: " + threshold.text + "\n", encoding="utf-8"
    )
    report = write_report(records, out / REPORT_FILE, meta)
    print(table)
    print(f"\nauto threshold: {threshold.text}")
    if meta.get("simulated"):
        print(
            "(scripted models: a simulation that tests the harness, not a result about any model)"
        )
    if not quiet:
        _say(f"runs: {out / RUNS_FILE}")
        _say(f"report: {report} (opens offline in any browser)")


def eval_epilog() -> str:
    sizes = ",".join(size_label(s) for s in DEFAULT_SIZES)
    return (
        f"Defaults: every suite ({', '.join(SUITES)}) at {sizes} tokens, every arm "
        f"({', '.join(ARMS)}), 3 tasks per cell, --max-cost {DEFAULT_MAX_COST:g} USD for the "
        "whole evaluation (estimated before anything is sent; each run's engine budget is "
        "what is left). Exit codes: 0 done; 1 error or refused by the cost guard; 64 usage "
        "error; 130 interrupted (run the same command again to resume)."
    )


def add_eval_parser(sub: Any) -> None:
    """``rlm eval`` and its flags (plus the engine options' flags of ``rlm run``)."""
    p = sub.add_parser(
        "eval",
        help="compare direct calls and RLMs on generated long-context tasks",
        description="Run task suites against a model with the arms direct, rlm, rlm-d2 and "
        "auto; write runs.jsonl, summary.txt and an offline HTML report.",
        epilog=eval_epilog(),
        conflict_handler="resolve",  # --max-cost here bounds the whole evaluation
    )
    add_option_flags(p, list(BACKENDS))
    p.add_argument(
        "--suites", metavar="A,B", help=f"built-in suites (default: all: {','.join(SUITES)})"
    )
    p.add_argument(
        "--suite-file",
        action="append",
        metavar="FILE.jsonl",
        help="a suite of your own (query, answer, context or path, scorer per line); repeatable",
    )
    p.add_argument(
        "--sizes",
        default=",".join(size_label(s) for s in DEFAULT_SIZES),
        metavar="8k,32k",
        help="context sizes in tokens (default: %(default)s)",
    )
    p.add_argument(
        "--arms", default=",".join(ARMS), metavar="A,B", help="arms to run (default: %(default)s)"
    )
    p.add_argument(
        "--tasks", type=int, default=3, metavar="N", help="tasks per suite and size (default: 3)"
    )
    p.add_argument("--seed", type=int, default=0, metavar="N", help="generation seed (default: 0)")
    p.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"output directory; an existing one is resumed (default: {DEFAULT_OUT})",
    )
    p.add_argument(
        "--max-cost",
        dest="max_cost",
        type=_max_cost,
        default=DEFAULT_MAX_COST,
        metavar=f"USD|{NO_LIMIT}",
        help=f"refuse to start when the estimate is above this, stop when it is spent "
        f"(default: {DEFAULT_MAX_COST:g}; {NO_LIMIT} removes it)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=4,
        metavar="N",
        help="runs in flight at once (default: 4)",
    )
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: this process (default); ray: the batch runner's Ray executor (a local "
        "cluster, or the one RAY_ADDRESS names)",
    )
    p.add_argument(
        "--retry-errors",
        action="store_true",
        help="on resume, run again the runs that ended in an error",
    )
    p.add_argument("--dry-run", action="store_true", help="print the estimate and stop")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild summary and report from --out's runs.jsonl",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )
    p.set_defaults(func=cmd_eval)


__all__ = ["add_eval_parser", "cmd_eval"]

if __name__ == "__main__":  # pragma: no cover
    from rlm_engine import cli

    sys.exit(cli.main(["eval", *sys.argv[1:]]))
