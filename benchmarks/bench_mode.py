"""``mode``: what one direct call saves against the RLM loop, and what routing costs.

    uv run python benchmarks/bench_mode.py [--latency S] [--environment NAME]

A needle question over documents of growing size, answered by the scripted model behind a
real HTTP server on 127.0.0.1 that waits ``--latency`` seconds (0.2) before every reply,
in mode="rlm" and mode="auto" (default threshold: a quarter of the root window; the
scripted model's unknown window is the client's 400,000 characters, about 114k tokens, so
auto answers directly up to about 28k tokens). The scripted model is taught to answer the
direct prompt by reading it (as a real model would); its accuracy says nothing about a real
model's (measure that with ``rlm eval``). Code runs in ``--environment`` (default: auto,
the sandbox where available, so the REPL start-up that a direct answer skips is counted).

Reported per size and mode: wall time, LM calls, tokens, the path taken. And the cost of the
decision itself on a 50 MB context (mode="auto" measures the prompt without building it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlm_engine import RLM  # noqa: E402
from rlm_engine.clients.scripted import ScriptedClient  # noqa: E402
from rlm_engine.config import RLMConfig  # noqa: E402
from rlm_engine.direct import plan  # noqa: E402
from rlm_engine.scripted import ScriptedModel, ScriptedServer  # noqa: E402
from tests.support.mode_support import QUESTION, haystack, teach_direct  # noqa: E402

SIZES = {"2k chars": 45, "20k chars": 450, "90k chars": 2_000, "400k chars": 9_000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--environment", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = ScriptedModel()
    teach_direct(model)
    with ScriptedServer(model, latency=args.latency) as server:
        print(f"latency {args.latency} s per reply, environment {args.environment}")
        print(f"{'size':>11} {'mode':>5} {'path':>6} {'wall s':>7} {'calls':>5} {'tokens':>8}")
        for label, lines in SIZES.items():
            doc = haystack("8080", lines=lines)
            for mode in ("rlm", "auto"):
                rlm = RLM(
                    backend="openai", model="scripted-root", base_url=server.base_url,
                    api_key="sk-bench", environment=args.environment, mode=mode,
                )  # fmt: skip
                walls, res = [], None
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    res = rlm.completion(doc, QUESTION)
                    walls.append(time.perf_counter() - t)
                    assert res.response == "8080", res
                assert res is not None
                print(
                    f"{label:>11} {mode:>5} {res.path:>6} {statistics.median(walls):7.2f} "
                    f"{res.usage.calls:5d} {res.usage.total_tokens:8,d}"
                )
    big = "Line: nothing of interest happens here.\n" * 1_250_000  # 50 MB
    client, config = ScriptedClient(), RLMConfig(mode="auto")
    t = time.perf_counter()
    for _ in range(20):
        route, _ = plan(config, big, QUESTION, client, None)
    took = (time.perf_counter() - t) / 20 * 1000
    print(f"routing a {len(big) / 1e6:.0f} MB context (mode=auto -> {route.path}): {took:.3f} ms")


if __name__ == "__main__":
    main()
