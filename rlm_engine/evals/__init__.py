"""``rlm eval``: evidence, on your own model, of when an RLM beats a direct call.

Generate task suites offline at the context sizes you choose, run the arms (``direct``,
``rlm``, ``rlm-d2``, ``auto``) on the same tasks, score them, and get a resumable JSONL of
every run, a summary table and an HTML report that opens offline::

    from rlm_engine import RLMConfig
    from rlm_engine.evals import EvalSpec, run_eval, summarize, format_table

    spec = EvalSpec(suites=["niah", "aggregate"], sizes=[8_000, 32_000, 128_000], tasks=3)
    result = run_eval(spec, RLMConfig(backend="openai", model="gpt-5-mini"), "rlm-eval",
                      max_cost=5.0, concurrency=4)
    print(format_table(summarize(result.records)))   # and rlm-eval/report.html

Modules: :mod:`.suites` (generators), :mod:`.user_suite` (JSONL suites), :mod:`.scorers`,
:mod:`.arms`, :mod:`.cost` (estimate and guard), :mod:`.runner`, :mod:`.records` (the
JSONL), :mod:`.summary`, :mod:`.report` and :mod:`.plots`.
"""

from __future__ import annotations

from rlm_engine.evals.arms import ARMS
from rlm_engine.evals.cost import CostGuardError, EvalEstimate
from rlm_engine.evals.records import RunLog, RunRecord
from rlm_engine.evals.report import render, write_report
from rlm_engine.evals.runner import EvalResult, EvalSpec, arun_eval, run_eval
from rlm_engine.evals.scorers import SCORERS, score
from rlm_engine.evals.suites import SUITES, generate
from rlm_engine.evals.summary import Cell, format_table, recommend_threshold, summarize
from rlm_engine.evals.tasks import DEFAULT_SIZES, Task, parse_size
from rlm_engine.evals.user_suite import SuiteFileError, load_suite

__all__ = [
    "ARMS",
    "DEFAULT_SIZES",
    "SCORERS",
    "SUITES",
    "Cell",
    "CostGuardError",
    "EvalEstimate",
    "EvalResult",
    "EvalSpec",
    "RunLog",
    "RunRecord",
    "SuiteFileError",
    "Task",
    "arun_eval",
    "format_table",
    "generate",
    "load_suite",
    "parse_size",
    "recommend_threshold",
    "render",
    "run_eval",
    "score",
    "summarize",
    "write_report",
]
