"""Engine benchmarks: per-iteration overhead, batched sub-call efficiency, context scaling.

    uv run python benchmarks/bench_engine.py [--quick]

Runs against the scripted model (in-process and over HTTP on 127.0.0.1), prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlm_engine import RLM  # noqa: E402
from rlm_engine.scripted import ScriptedModel  # noqa: E402
from rlm_engine.scripted.server import ScriptedServer  # noqa: E402

TRIVIAL = "```repl\nx = 1\n```"


def _iteration_script(model: ScriptedModel, n: int) -> None:
    model.add_rule(lambda r: r.is_rlm_root, [TRIVIAL] * (n - 1) + ["FINAL(done)"])


def _timed_iterations(rlm: RLM) -> tuple[float, float, int]:
    """(start-up until the first root answer, steady-state seconds per iteration, iterations)."""
    marks: list[float] = []

    def on_event(e: dict) -> None:
        if e["event"] in ("root_response", "final"):
            marks.append(time.perf_counter())

    t0 = time.perf_counter()
    res = rlm.completion("context", "q", on_event=on_event)
    n = len(res.iterations)
    return marks[0] - t0, (marks[-1] - marks[0]) / (n - 1), n


def bench_overhead(iterations: int = 200) -> list[tuple[str, str, str]]:
    rows = []
    # In-process scripted backend: no network at all, so this is the engine's own time.
    model = ScriptedModel()
    _iteration_script(model, iterations)
    rlm = RLM(
        backend="scripted",
        backend_kwargs={"model": model},
        max_iterations=iterations + 1,
        environment="local",  # the engine's own time; environments: bench_environments.py
    )
    _, per_it, n = _timed_iterations(rlm)
    rows.append(
        (
            f"engine overhead / iteration, in-process model ({n} iterations)",
            f"{per_it * 1e3:.2f} ms",
            "< 5 ms",
        )
    )

    with ScriptedServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x")
        msgs = [{"role": "user", "content": "What is 1+1?"}]
        client.chat.completions.create(model="scripted-sub", messages=msgs)
        t = time.perf_counter()
        for _ in range(200):
            client.chat.completions.create(model="scripted-sub", messages=msgs)
        rtt = (time.perf_counter() - t) / 200
        _iteration_script(server.model, iterations)
        kw = {"model_name": "scripted-root", "base_url": server.base_url, "api_key": "x"}
        rlm = RLM(
            backend="openai", backend_kwargs=kw, max_iterations=iterations + 1, environment="local"
        )
        startup, per_it_http, n = _timed_iterations(rlm)
        server.model.clear_rules()
        server.model.add_rule(lambda r: r.is_rlm_root, "FINAL(done)")
        short = RLM(backend="openai", backend_kwargs=kw, environment="local")
        short.completion("context", "q")
        t = time.perf_counter()
        for _ in range(50):
            short.completion("context", "q")
        warm = (time.perf_counter() - t) / 50
    rows.append(("bare HTTP round trip, openai SDK -> local server", f"{rtt * 1e3:.2f} ms", "-"))
    rows.append(
        (
            "iteration over HTTP, zero-latency server (root call + cell)",
            f"{per_it_http * 1e3:.2f} ms",
            "-",
        )
    )
    rows.append(
        (
            "engine overhead / iteration over HTTP (minus round trip)",
            f"{max(per_it_http - rtt, 0) * 1e3:.2f} ms",
            "< 5 ms",
        )
    )
    rows.append(
        ("completion start-up in a fresh process (first root call)", f"{startup * 1e3:.0f} ms", "-")
    )
    rows.append(
        (
            "whole 1-iteration completion, warm process, local (the default: see environments)",
            f"{warm * 1e3:.1f} ms",
            "-",
        )
    )
    return rows


class _ServerProcess:
    """The scripted server in its own process, like a real (remote) LM server: its CPU does
    not compete with the client for one GIL."""

    def __init__(self, latency: float) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rlm_engine.scripted.server",
                "--port",
                str(self.port),
                "--latency",
                str(latency),
                "--quiet",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[1],
        )
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                openai.OpenAI(base_url=self.base_url, api_key="x", max_retries=0).models.list()
                return
            except openai.OpenAIError:
                time.sleep(0.1)
        self.close()
        raise RuntimeError("scripted server process did not start")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def bench_batched(latency: float = 0.1, n: int = 64, concurrencies: tuple[int, ...] = (8, 16, 32)):
    rows = []
    server = _ServerProcess(latency)
    try:
        code = f"```repl\nout = llm_query_batched([f'What is {{i}}+1?' for i in range({n})])\n```\nFINAL(ok)"
        for c in concurrencies:
            root = ScriptedModel()
            root.add_rule(lambda r: r.is_rlm_root, [code])
            sub = {"model_name": "scripted-sub", "base_url": server.base_url, "api_key": "x"}
            rlm = RLM(
                backend="scripted",
                backend_kwargs={"model": root},
                sub_backend="openai",
                sub_backend_kwargs=sub,
                max_concurrency=c,
            )
            res = rlm.completion("ctx", "q")
            block = res.iterations[0].code_blocks[0]
            assert len(block.subcalls) == n and not any(x.error for x in block.subcalls)
            wall = block.duration
            ideal = math.ceil(n / c) * latency
            rows.append(
                (
                    f"llm_query_batched N={n} C={c} L={latency * 1e3:.0f} ms",
                    f"{wall:.3f} s (ideal {ideal:.2f} s, +{(wall / ideal - 1) * 100:.1f}%)",
                    "within 10%",
                )
            )
    finally:
        server.close()
    return rows


_SCALING_CHILD = r"""
import json, resource, sys, time
from rlm_engine import RLM
from rlm_engine.scripted import ScriptedModel
size = int(sys.argv[1]); env = sys.argv[2]
def rss():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS'): return int(line.split()[1]) * 1024
ctx = 'abcdefghij' * (size // 10)
after_ctx = rss()
first = {}
m = ScriptedModel()
def root(r):
    first.setdefault('t', time.perf_counter())
    return "```repl\nprint(len(context))\n```\nFINAL(done)"
m.add_rule(lambda r: r.is_rlm_root, root)
t0 = time.perf_counter()
res = RLM(backend='scripted', backend_kwargs={'model': m}, environment=env).completion(ctx, 'q')
total = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({'first_call': first['t'] - t0, 'total': total, 'peak': peak, 'after_ctx': after_ctx,
                  'status': res.status, 'printed': res.iterations[0].feedback[:200]}))
"""


def bench_context_scaling(sizes: list[int], environment: str = "local"):
    rows = []
    root = Path(__file__).resolve().parents[1]
    for size in sizes:
        out = subprocess.run(
            [sys.executable, "-c", _SCALING_CHILD, str(size), environment],
            capture_output=True,
            text=True,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        if out.returncode != 0:
            rows.append(
                (
                    f"context {size / 1e6:,.0f} MB ({environment})",
                    "failed: " + out.stderr[-200:],
                    "-",
                )
            )
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        over = (r["peak"] - size) / 1e6
        rows.append(
            (
                f"context {size / 1e6:,.0f} MB ({environment}): time to first root call",
                f"{r['first_call'] * 1e3:.1f} ms",
                "-",
            )
        )
        rows.append(
            (
                f"context {size / 1e6:,.0f} MB ({environment}): peak RSS",
                f"{r['peak'] / 1e6:,.0f} MB (context + {over:,.0f} MB)",
                "< context + 300 MB",
            )
        )
    return rows


def print_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    w1 = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    print(f"\n{title}")
    print(f"| {'measure'.ljust(w1)} | {'result'.ljust(w2)} | target |")
    print(f"|{'-' * (w1 + 2)}|{'-' * (w2 + 2)}|--------|")
    for a, b, c in rows:
        print(f"| {a.ljust(w1)} | {b.ljust(w2)} | {c} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--quick", action="store_true", help="small sizes only (no 100 MB / 1 GB contexts)"
    )
    args = ap.parse_args(argv)
    print_table("Engine overhead", bench_overhead(50 if args.quick else 200))
    if args.quick:
        batched = bench_batched(concurrencies=(16,))
    else:
        batched = bench_batched(0.1) + bench_batched(1.0)
    print_table("Batched sub-calls (server in its own process)", batched)
    sizes = [1_000_000] if args.quick else [1_000_000, 100_000_000, 1_000_000_000]
    print_table("Context scaling", bench_context_scaling(sizes))


if __name__ == "__main__":
    main()
