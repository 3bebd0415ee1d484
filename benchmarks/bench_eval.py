"""rlm eval: what the harness itself costs, apart from the model.

    uv run python benchmarks/bench_eval.py [--quick]

Reported:

- generating one task of each suite at each default size (8k to 2M tokens; --quick stops
  at 128k): seconds and characters, so a user knows the suites are not what takes time;
- a whole offline evaluation (every suite and arm, 3 tasks per cell) with the scripted
  models in process and ``root_context_window=272000``: runs, wall seconds, seconds per
  run, and the report's size (--quick: sizes 8k and 32k).

The scripted models answer instantly, so the evaluation's time is the harness and the
engine (REPL start, sub-call plumbing, scoring, the JSONL and the report), not a model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlm_engine.config import RLMConfig  # noqa: E402
from rlm_engine.evals import DEFAULT_SIZES, SUITES, EvalSpec, generate, run_eval  # noqa: E402
from rlm_engine.evals.report import write_report  # noqa: E402
from rlm_engine.evals.tasks import size_label  # noqa: E402


def bench_generation(sizes: tuple[int, ...]) -> None:
    print(f"{'suite':<10}" + "".join(f"{size_label(s):>12}" for s in sizes))
    for suite in SUITES:
        cells = []
        for size in sizes:
            started = time.perf_counter()
            task = generate(suite, 0, size, 0)
            cells.append(f"{time.perf_counter() - started:.3f} s")
            assert abs(task.context_tokens - size) <= 0.05 * size
        print(f"{suite:<10}" + "".join(f"{c:>12}" for c in cells))


def bench_eval(sizes: tuple[int, ...]) -> None:
    config = RLMConfig(backend="scripted", root_context_window=272_000)
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = run_eval(EvalSpec(sizes=sizes, tasks=3), config, out, concurrency=4)
        wall = time.perf_counter() - started
        started = time.perf_counter()
        report = write_report(result.records, Path(out) / "report.html", result.meta)
        render = time.perf_counter() - started
        print(
            f"\noffline evaluation, sizes {','.join(size_label(s) for s in sizes)}: "
            f"{result.ran} runs in {wall:.1f} s ({wall / max(1, result.ran):.3f} s per run); "
            f"report {report.stat().st_size / 1000:.0f} kB rendered in {render * 1000:.0f} ms"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args()
    gen_sizes = DEFAULT_SIZES[:3] if args.quick else DEFAULT_SIZES
    bench_generation(gen_sizes)
    bench_eval((8_000, 32_000) if args.quick else DEFAULT_SIZES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
