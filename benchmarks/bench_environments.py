"""Execution environment benchmarks: start-up, per-cell round trip, host-call round trip and
context transfer cost, for local, subprocess, sandbox and docker; then what the default
(``auto``) costs per completion next to ``local``.

    uv run python benchmarks/bench_environments.py [--quick] [--envs local,subprocess]
        [--sizes 2e6,1e8,1e9] [--image rlm-sandbox:test] [--json out.json]

Context transfer is measured as the extra ``start()`` time a context of that size costs over
an empty one, plus the first cell that touches it (``len(context)``). The default sizes
include 1 GB, measured once per environment (it needs ~4 GB of free RAM per run).

Start-up is shown cold (a new worker process) and warm (one started ahead of time, see
``rlm_engine/environments/warm.py``; the pool fills once a process has started two
environments of a kind). The per-completion table runs whole ``RLM.completion`` calls with
one root turn (in-process scripted model), back to back and with a 0.2 s pause between
them, the time a real root LM call gives the pool to refill.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlm_engine import RLM  # noqa: E402
from rlm_engine.environments import HostFunction, make_environment  # noqa: E402
from rlm_engine.environments.auto import resolve_auto  # noqa: E402
from rlm_engine.environments.probe import probe  # noqa: E402
from rlm_engine.environments.warm import warm_pool  # noqa: E402
from rlm_engine.scripted import ScriptedModel  # noqa: E402

ENVIRONMENTS = ["local", "subprocess", "sandbox", "docker"]


def env_kwargs(name: str, image: str) -> dict[str, Any]:
    return {"image": image, "timeout": 600} if name == "docker" else {"timeout": 600}


async def _echo(prompt: str, model: str | None = None) -> str:
    return prompt


FUNCTIONS = {"llm_query": HostFunction("llm_query", _echo)}


async def time_start(
    name: str, kw: dict[str, Any], context: Any, *, warm: bool = False
) -> tuple[float, float, Any]:
    """(seconds in start(), seconds of the first cell reading the context, environment).

    ``warm``: wait until a worker started ahead of time is ready, and start on it; else
    start a new worker process (cold)."""
    env = make_environment(name, kw)
    if hasattr(env, "use_warm_pool"):
        env.use_warm_pool = warm
        if warm:
            await _pool_ready(env)
    t0 = time.perf_counter()
    await env.start(context, FUNCTIONS)
    t1 = time.perf_counter()
    result = await env.execute("n = len(context)\nprint(n)")
    t2 = time.perf_counter()
    if result.error:
        await env.close()
        raise RuntimeError(f"{name}: first cell failed: {result.error}")
    return t1 - t0, t2 - t1, env


async def _pool_ready(env: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while warm_pool.idle(env) == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def bench_env(name: str, image: str, sizes: list[int], starts: int, cells: int) -> dict:
    kw = env_kwargs(name, image)
    out: dict[str, Any] = {"environment": name}
    start_times, warm_times, close_times = [], [], []
    can_warm = hasattr(make_environment(name, kw), "use_warm_pool")
    for warm in (False, True) if can_warm else (False,):
        if warm:  # a kind's pool fills once a process has started two of it
            for _ in range(2):
                await (await time_start(name, kw, "small context", warm=True))[2].close()
        for _ in range(starts):
            started, _, env = await time_start(name, kw, "small context", warm=warm)
            t0 = time.perf_counter()
            await env.close()
            close_times.append(time.perf_counter() - t0)
            (warm_times if warm else start_times).append(started)
    warm_pool.drain()
    out["start_s"] = statistics.median(start_times)
    out["warm_start_s"] = statistics.median(warm_times) if warm_times else None
    out["close_s"] = statistics.median(close_times)

    env = make_environment(name, kw)
    await env.start("small context", FUNCTIONS)
    try:
        await env.execute("x = 0")
        samples = []
        for _ in range(cells):
            t0 = time.perf_counter()
            await env.execute("x += 1")
            samples.append(time.perf_counter() - t0)
        out["cell_ms"] = statistics.median(samples) * 1000
        samples = []
        for _ in range(cells):
            t0 = time.perf_counter()
            await env.execute("r = llm_query('ping')")
            samples.append(time.perf_counter() - t0)
        out["host_call_ms"] = statistics.median(samples) * 1000
        t0 = time.perf_counter()
        await env.execute("r = llm_query('p' * 10_000_000)")
        out["host_call_10mb_ms"] = (time.perf_counter() - t0) * 1000
    finally:
        await env.close()

    out["context"] = {}
    for size in sizes:
        context = "abcdefghij" * (size // 10)
        started, first_cell, env = await time_start(name, kw, context)
        await env.close()
        del context
        out["context"][size] = {
            "start_s": started,
            "first_cell_s": first_cell,
            "transfer_s": max(started - out["start_s"], 0.0),
        }
    return out


def completion_costs(name: str, sizes: list[int], runs: int) -> dict[str, Any]:
    """Whole one-turn completions in ``name``: median ms back to back and with pauses, and
    the extra time a context of each size adds (one run each)."""
    model = ScriptedModel()
    model.add_rule(lambda r: r.is_rlm_root, "```repl\nFINAL(str(len(context)))\n```")
    rlm = RLM(backend="scripted", backend_kwargs={"model": model}, environment=name)
    out: dict[str, Any] = {"environment": name}
    t0 = time.perf_counter()
    rlm.completion("first", "q")  # the process's first: probes auto, imports
    out["first_ms"] = (time.perf_counter() - t0) * 1000
    for label, pause in (("back_to_back_ms", 0.0), ("paused_ms", 0.2)):
        samples = []
        for _ in range(runs):
            time.sleep(pause)
            t0 = time.perf_counter()
            res = rlm.completion("small context", "q")
            samples.append(time.perf_counter() - t0)
            assert res.status == "final", res.error
        out[label] = statistics.median(samples) * 1000
    out["context_ms"] = {}
    for size in sizes:
        context = "abcdefghij" * (size // 10)
        time.sleep(0.2)
        t0 = time.perf_counter()
        res = rlm.completion(context, "q")
        out["context_ms"][size] = (time.perf_counter() - t0) * 1000 - out["paused_ms"]
        assert res.response == str(size), res.error
        del context
    warm_pool.drain()
    return out


def fmt_size(n: int) -> str:
    for unit, div in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= div:
            return f"{n / div:g} {unit}"
    return f"{n} B"


def print_table(rows: list[dict], sizes: list[int]) -> None:
    head = [
        "environment",
        "start-up (cold / warm)",
        "close",
        "cell round trip",
        "llm_query round trip",
        "10 MB llm_query",
    ] + [f"context {fmt_size(s)}" for s in sizes]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        if "error" in r:
            print(f"| {r['environment']} | unavailable: {r['error']} |")
            continue
        cells = [
            r["environment"],
            f"{r['start_s'] * 1000:.0f} ms / "
            + ("-" if r["warm_start_s"] is None else f"{r['warm_start_s'] * 1000:.0f} ms"),
            f"{r['close_s'] * 1000:.0f} ms",
            f"{r['cell_ms']:.2f} ms",
            f"{r['host_call_ms']:.2f} ms",
            f"{r['host_call_10mb_ms']:.0f} ms",
        ]
        for s in sizes:
            c = r["context"][s]
            cells.append(
                f"+{c['transfer_s']:.2f} s start, {c['first_cell_s'] * 1000:.0f} ms 1st cell"
            )
        print("| " + " | ".join(cells) + " |")


def print_completion_table(rows: list[dict], sizes: list[int]) -> None:
    head = [
        "environment",
        "first completion of the process",
        "1-turn completion, back to back",
        "1-turn completion, 0.2 s apart",
    ] + [f"+ context {fmt_size(s)}" for s in sizes]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [
            r["environment"],
            f"{r['first_ms']:.0f} ms",
            f"{r['back_to_back_ms']:.1f} ms",
            f"{r['paused_ms']:.1f} ms",
        ] + [f"+{r['context_ms'][s]:.0f} ms" for s in sizes]
        print("| " + " | ".join(cells) + " |")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", default=",".join(ENVIRONMENTS))
    ap.add_argument("--sizes", default="2e6,1e8,1e9", help="context sizes in characters")
    ap.add_argument("--image", default="rlm-sandbox:test", help="docker image")
    ap.add_argument("--quick", action="store_true", help="fewer samples, no 1 GB context")
    ap.add_argument("--json", help="also write the raw numbers here")
    args = ap.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    starts, cells, runs = (3, 20, 10) if args.quick else (5, 200, 30)
    if args.quick:
        sizes = [s for s in sizes if s < 10**9]
    rows = []
    for name in args.envs.split(","):
        reason = await probe(name, **env_kwargs(name, args.image))
        if reason:
            rows.append({"environment": name, "error": reason})
            continue
        print(f"benchmarking {name} ...", file=sys.stderr)
        rows.append(await bench_env(name, args.image, sizes, starts, cells))
    print_table(rows, sizes)

    t0 = time.perf_counter()
    default = await asyncio.to_thread(resolve_auto)
    decided = time.perf_counter() - t0
    print(
        f"\nPer completion: local and the default (auto = {default} here; deciding that "
        f"took {decided * 1000:.0f} ms, once per process)",
        flush=True,
    )
    completion_sizes = [s for s in sizes if s <= 10**8]
    per_completion = [
        await asyncio.to_thread(completion_costs, name, completion_sizes, runs)
        for name in ("local", "auto")
    ]
    per_completion[1]["environment"] = f"auto ({default})"
    print_completion_table(per_completion, completion_sizes)
    if args.json:
        out = {"environments": rows, "per_completion": per_completion}
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
