"""``environment="command"`` over ``docker run -i --rm --network none --read-only ...`` on the
local test image (the box of tests/command_docker.py), next to the ``docker`` environment (Docker SDK,
no extra clean-up).

    uv run python benchmarks/bench_command_docker.py [--runs 3] [--cells 50]

Reported per kind and run: start (container, context sent, bootstrap, init) with a small
and a 10 MB context, the median round trip of a trivial cell, a stuck cell until the REPL
answers again (1 s timeout and 1 s grace included; kill, fresh container, context again) and close (the worker's container gone from
the daemon, plus, for ``command``, the clean-up run of the prefix).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from command_docker import IMAGE, docker_run, wait_gone  # noqa: E402

from rlm_engine.environments import make_environment  # noqa: E402

STUCK = "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass\n"


def options(kind: str) -> dict[str, Any]:
    if kind == "command":
        return {"command": docker_run(), "timeout": 30, "kill_grace": 1}
    return {"image": IMAGE, "timeout": 30, "kill_grace": 1}


async def measure(kind: str, cells: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, context in (("start", "ctx"), ("start 10 MB", "x" * (10 << 20))):
        env = make_environment(kind, options(kind))
        if hasattr(env, "use_warm_pool"):
            env.use_warm_pool = False
        t = time.perf_counter()
        await env.start(context, {})
        out[label] = time.perf_counter() - t
        if label == "start":
            times = []
            for _ in range(cells):
                t = time.perf_counter()
                await env.execute("x = 1")
                times.append(time.perf_counter() - t)
            out["cell"] = statistics.median(times)
            t = time.perf_counter()  # 1 s timeout, 1 s grace, kill, fresh box, context again
            await env.execute(STUCK, timeout=1)
            await env.execute("print(context)")
            out["stuck cell to a fresh box"] = time.perf_counter() - t
        t = time.perf_counter()
        await env.close()
        if kind == "command":
            await asyncio.to_thread(wait_gone)
        out[f"close ({label})"] = time.perf_counter() - t
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cells", type=int, default=50)
    args = parser.parse_args()
    for kind in ("command", "docker"):
        for run in range(args.runs):
            r = asyncio.run(measure(kind, args.cells))
            print(
                f"{kind:8} run {run + 1}: "
                + ", ".join(
                    f"{k} {v * 1000:.2f} ms" if k == "cell" else f"{k} {v:.2f} s"
                    for k, v in r.items()
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
