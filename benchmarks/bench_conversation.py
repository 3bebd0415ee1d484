"""Conversations and long runs: what a long root history sends, caches and costs.

    uv run python benchmarks/bench_conversation.py [--quick] [--markdown FILE]

One 20-iteration run (10 with --quick), in both wire formats, against the scripted model
behind a real HTTP server on 127.0.0.1 (it simulates the providers' prompt caches and,
when given a window, rejects longer prompts with their 400). Known model names
(claude-haiku-4-5, gpt-5-mini) so that list prices and cache rates apply. Reported:

- the root input tokens sent, and of them read from the prompt cache;
- the USD billed with prompt caching, with ``prompt_caching=False``, and for the same
  tokens at the uncached price (OpenAI caches on its own: a client cannot turn it off);
- the peak root prompt without a window, and with a window the server enforces and
  ``root_context_window`` set (the history is compacted to fit);
- in a conversation whose first turn is that run: a follow-up answered at once
  ("Thanks!") and one that reads a variable turn 1 made, against the first turn.

Each iteration's code makes one sub-call and prints ~1,600 characters, like a root
reading a document section by section. The scripted root's replies are fixed, so the
numbers measure the engine (prompt shape, caching, compaction), not a model's choices.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlm_engine import RLM, RLMResult  # noqa: E402
from rlm_engine.clients.base import compute_cost, price_for  # noqa: E402
from rlm_engine.compaction import COMPACTION_REQUEST  # noqa: E402
from rlm_engine.scripted import ScriptedModel, ScriptedServer  # noqa: E402
from rlm_engine.scripted.policy import query_text  # noqa: E402
from rlm_engine.usage import UsageTotals  # noqa: E402

FORMATS = {"anthropic": "claude-haiku-4-5", "openai": "gpt-5-mini"}
QUERY = "Work through the report section by section and add up the section numbers."
THANKS = "Thanks! That is all I needed."
REUSE = "What did the note on section 3 say?"
SECTION_CHARS = 400


def report(sections: int) -> str:
    return "\n".join(
        f"Section {i}: " + f"measurement {i} recorded; " * (SECTION_CHARS // 26)
        for i in range(1, sections + 1)
    )


def script(model: ScriptedModel, iterations: int) -> None:
    """The root's replies: one section per iteration, then FINAL; summaries on request;
    follow-ups answered at once or from a variable."""

    def asks(text: str) -> Any:
        return lambda r: r.is_rlm_root and text in query_text(r.first_user)

    model.add_rule(
        lambda r: r.is_rlm_root and COMPACTION_REQUEST in r.last_user,
        lambda r: (
            "Progress: `total` holds the running sum of section numbers; `note_<i>` "
            "holds the sub-model's note on section i. Next: the next section."
        ),
    )
    model.add_rule(asks(THANKS), ["FINAL(You're welcome: the sections add up as reported.)"])
    model.add_rule(asks(REUSE), ["```repl\nprint(note_3[:200])\n```", "FINAL_VAR(note_3)"])
    steps = [
        f"I will read section {i} and keep a note on it.\n```repl\n"
        f"total = globals().get('total', 0) + {i}\n"
        f"note_{i} = llm_query('Summarize this section: ' + "
        f"context.split(chr(10))[{i - 1}][:{SECTION_CHARS}])\n"
        f"print('section {i}:', note_{i}[:100])\nprint(context.split(chr(10))[{i - 1}] * 4)\n```"
        for i in range(1, iterations)
    ]
    model.add_rule(asks(QUERY), [*steps, "FINAL_VAR(total)"])


@dataclass
class Run:
    result: RLMResult
    compactions: int
    rejected: int

    @property
    def root(self) -> UsageTotals:
        return self.result.usage.root

    @property
    def peak(self) -> int:
        return max(r.input_tokens for r in self.result.usage.records if r.role == "root")


def rlm_for(server: ScriptedServer, api: str, **options: Any) -> RLM:
    return RLM(
        backend=api,
        model=FORMATS[api],
        base_url=server.url if api == "anthropic" else server.base_url,
        api_key="sk-bench",
        environment="local",
        max_iterations=60,
        max_retries=0,
        **options,
    )


def long_run(api: str, iterations: int, window: int | None = None, **options: Any) -> Run:
    model = ScriptedModel()
    script(model, iterations)
    with ScriptedServer(model, context_window=window) as server:
        events: list[dict[str, Any]] = []
        if window is not None:
            options["root_context_window"] = window
        res = rlm_for(server, api, **options).completion(
            report(iterations), QUERY, on_event=events.append
        )
        rejected = sum(1 for r in server.stats.log if r.fault == "context_length")
    _check(res, str(sum(range(1, iterations))))
    return Run(res, sum(1 for e in events if e["event"] == "compaction"), rejected)


def conversation(api: str, iterations: int) -> list[RLMResult]:
    model = ScriptedModel()
    script(model, iterations)
    with (
        ScriptedServer(model) as server,
        rlm_for(server, api).conversation(report(iterations)) as conv,
    ):
        results = [conv.send(QUERY), conv.send(THANKS), conv.send(REUSE)]
    _check(results[0], str(sum(range(1, iterations))))
    return results


def _check(res: RLMResult, want: str) -> None:
    if res.status != "final" or res.response != want:
        raise SystemExit(f"benchmark run went wrong: {res.status} {res.response!r} {res.error}")


def usd(x: float | None) -> str:
    return "n/a" if x is None else f"${x:.4f}"


def uncached(api: str, t: UsageTotals) -> float | None:
    return compute_cost(price_for(FORMATS[api]), t.input_tokens, t.output_tokens)


def measure(iterations: int) -> tuple[list[str], list[list[str]]]:
    columns = [f"{api} ({model})" for api, model in FORMATS.items()]
    rows: dict[str, list[str]] = {}

    def row(name: str, value: str) -> None:
        rows.setdefault(name, []).append(value)

    for api in FORMATS:
        on = long_run(api, iterations)
        off = long_run(api, iterations, prompt_caching=False)
        peak = on.peak
        window = _window_for(peak)
        fit = long_run(api, iterations, window=window)
        turns = conversation(api, iterations)
        r, t = on.root, on.result.usage.total
        row("iterations (root calls)", f"{len(on.result.iterations)} ({r.calls})")
        row("root input tokens sent", f"{r.input_tokens:,}")
        row(
            "  of them read from the prompt cache",
            f"{r.cached_input_tokens:,} ({r.cached_input_tokens / r.input_tokens:.0%})",
        )
        row("  written to the cache", f"{r.cache_write_tokens:,}")
        row("billed, whole run: prompt caching on", usd(t.cost))
        off_note = "" if api == "anthropic" else " (automatic: unchanged)"
        row("billed, whole run: prompt_caching=False", usd(off.result.usage.total.cost) + off_note)
        row("billed, whole run: same tokens uncached", usd(uncached(api, t)))
        row(
            "billed, root calls only: caching on / uncached",
            f"{usd(r.cost)} / {usd(uncached(api, r))}",
        )
        row("peak root prompt, no window (tokens)", f"{peak:,}")
        row(
            "peak root prompt, server window enforced",
            f"{fit.peak:,} of {window:,} ({fit.peak / window:.0%}); "
            f"{fit.compactions} compactions, {fit.rejected} rejected",
        )
        row(
            "  with that window: root tokens sent (cached), billed",
            f"{fit.root.input_tokens:,} ({fit.root.cached_input_tokens:,}), "
            f"{usd(fit.result.usage.total.cost)}",
        )
        first, thanks, reuse = turns
        for label, res in (("turn 1 (the run)", first), ("follow-up 'Thanks!'", thanks),
                           ("follow-up reading a turn-1 variable", reuse)):  # fmt: skip
            u = res.usage
            share = (
                f" = {u.total.cost / first.usage.total.cost:.1%} of turn 1"
                if u.total.cost is not None and first.usage.total.cost and res is not first
                else ""
            )
            row(
                f"conversation: {label}",
                f"{u.root.calls} root + {u.sub.calls} sub calls, {u.total.total_tokens:,} "
                f"tokens, {usd(u.total.cost)}{share}",
            )
    return columns, [[name, *values] for name, values in rows.items()]


def _window_for(peak: int) -> int:
    """A window well under the run's peak prompt, so the history must be compacted."""
    return max(4_000, int(peak * 0.6) // 500 * 500)


def table(columns: list[str], rows: list[list[str]]) -> str:
    head = ["measure", *columns]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a 10-iteration run instead of 20")
    ap.add_argument("--markdown", metavar="FILE", help="also write the table to FILE")
    args = ap.parse_args(argv)
    iterations = 10 if args.quick else 20
    columns, rows = measure(iterations)
    text = table(columns, rows)
    print(f"\nConversations and long runs ({iterations}-iteration root history)")
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
