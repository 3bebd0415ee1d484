"""Batch runs: rows/s of the local executor against Ray's, and the shared rate limit.

    uv run python benchmarks/bench_batch.py [--quick] [--rows N] [--latency S]

N small rows (200; 40 with --quick), each a needle question over a 6,000-character
document, answered by the scripted model behind a real HTTP server on 127.0.0.1 that
waits ``--latency`` seconds (0.2) before every reply. A row is 4 LM calls (2 root turns,
a chunk read, a combine), so it takes at least 0.8 s of LM time; code runs in the
``local`` environment, so the numbers are the runner's, not a sandbox's start-up.

Reported, per executor at the same ``--concurrency`` (16):
- wall time and rows/s (Ray: the cluster's start-up shown apart, and a first "cold" batch
  that starts the workers, then a "warm" one on the same cluster);
- peak memory: the resident set of this process and every process under it (Ray's
  raylet, GCS and workers included), sampled every 0.2 s;
- with a shared limit of ``--rpm`` requests/min (1,200 = 20/s) on a quarter of the rows:
  requests/s the server measured (mean over the run, and the peak in any one second).
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlm_engine.batch import run_batch  # noqa: E402
from rlm_engine.scripted.server import ScriptedServer  # noqa: E402

QUERY = "What is the vault access code?"
WORDS = ["alpha", "beta", "gamma", "delta", "report", "status", "metric", "budget"]


def document(secret: str, seed: int, chars: int = 6_000) -> str:
    rng = random.Random(seed)
    lines: list[str] = []
    while sum(len(s) + 1 for s in lines) < chars:
        lines.append(" ".join(rng.choice(WORDS) for _ in range(12)) + ".")
    lines.insert(len(lines) * 2 // 3, f"The vault access code is {secret}.")
    return "\n".join(lines)


def rows(n: int, tag: str) -> list[dict[str, Any]]:
    return [
        {"id": f"{tag}{i}", "context": document(str(10_000 + i), i), "query": QUERY,
         "expected": str(10_000 + i)}
        for i in range(n)
    ]  # fmt: skip


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, frontier = {root}, {root}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier and p not in tree}
        tree |= frontier
    return tree


class PeakMemory:
    """Peak resident memory of this process and its descendants while the block runs."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import os

        while not self._stop.is_set():
            total = sum(_rss_kb(p) for p in _tree(os.getpid())) / 1024
            self.peak_mb = max(self.peak_mb, total)
            self._stop.wait(0.2)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def server_rates(server: ScriptedServer) -> tuple[float, int]:
    starts = sorted(r.started_at for r in server.stats.completions())
    span = starts[-1] - starts[0] if len(starts) > 1 else 0.0
    peak = max((sum(1 for t in starts[i:] if t < s + 1.0) for i, s in enumerate(starts)),
               default=0)  # fmt: skip
    return (len(starts) - 1) / span if span else 0.0, peak


def engine(server: ScriptedServer) -> dict[str, Any]:
    return {"backend": "openai", "base_url": server.base_url, "api_key": "sk-bench",
            "model": "scripted-root", "environment": "local"}  # fmt: skip


def line(name: str, summary: Any, mem: PeakMemory, extra: str = "") -> None:
    ok = summary.by_status.get("final", 0)
    print(
        f"| {name} | {summary.done} | {ok} | {summary.wall_seconds:.1f} s | "
        f"{summary.rows_per_second:.1f} | {mem.peak_mb:,.0f} MB |{extra}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="40 rows instead of 200")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--latency", type=float, default=0.2, help="seconds per LM reply")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rpm", type=float, default=1_200, help="the shared limit's requests/min")
    args = ap.parse_args(argv)
    n = args.rows or (40 if args.quick else 200)
    limited = max(4, n // 4)
    print(f"{n} rows, {args.latency:g} s per LM reply, concurrency {args.concurrency}\n")
    print("| run | rows | final | wall | rows/s | peak memory |")
    print("|---|---|---|---|---|---|")
    with ScriptedServer(latency=args.latency) as server:
        with PeakMemory() as mem:
            local = run_batch(rows(n, "l"), concurrency=args.concurrency, **engine(server))
        line("local", local, mem)

        from rlm_engine.batch.ray_executor import cluster

        started = time.monotonic()
        with PeakMemory() as mem, cluster(None, workers=args.concurrency):
            startup = time.monotonic() - started
            cold = run_batch(rows(n, "c"), executor="ray", concurrency=args.concurrency,
                             **engine(server))  # fmt: skip
            line("ray, cold (starts its workers)", cold, mem, f" start-up {startup:.1f} s")
            warm = run_batch(rows(n, "w"), executor="ray", concurrency=args.concurrency,
                             **engine(server))  # fmt: skip
            line("ray, warm (same cluster)", warm, mem)
            server.reset_stats()
            rated = run_batch(rows(limited, "r"), executor="ray", concurrency=args.concurrency,
                              requests_per_minute=args.rpm, **engine(server))  # fmt: skip
            ray_rates = server_rates(server)
        server.reset_stats()
        local_rated = run_batch(rows(limited, "q"), concurrency=args.concurrency,
                                requests_per_minute=args.rpm, **engine(server))  # fmt: skip
        local_rates = server_rates(server)

    limit = args.rpm / 60
    print(f"\nShared limit {args.rpm:,.0f} requests/min = {limit:.1f}/s, {limited} rows:\n")
    print("| executor | requests | mean requests/s at the server | peak in one second |")
    print("|---|---|---|---|")
    for name, summary, (mean, peak) in (
        ("local", local_rated, local_rates),
        ("ray", rated, ray_rates),
    ):
        print(f"| {name} | {summary.calls} | {mean:.1f} | {peak} |")


if __name__ == "__main__":
    main()
