"""What the remote-sandbox seam costs on top of the worker itself, cloud latency excluded.

    uv run python benchmarks/bench_remote_transport.py [--cells N]

No cloud is reachable here, so ``modal``, ``prime`` and ``e2b`` run behind the fakes of
``tests/remote_sandbox_fakes.py`` (the worker in a local subprocess, each SDK's stream
shapes; E2B's stdout as UTF-8 text, so its base64 relay is in the loop), ``command`` runs
through ``nice -n 1`` on this machine, and ``subprocess`` is the baseline. Reported per kind: start (create, context upload, bootstrap, init), the
median round trip of a trivial cell, a cell that receives a 10 MB host-call result, and
one that prints 10 MB (capped output off). Against a real provider add its network round
trips (one per frame each way) and sandbox creation (seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import pytest  # noqa: E402  (its MonkeyPatch installs the fakes)
from remote_sandbox_fakes import INSTALL, CloudLedger, remove_remote_dirs  # noqa: E402

from rlm_engine.environments import HostFunction, make_environment  # noqa: E402

BIG = 10 * 1024 * 1024


async def measure(kind: str, cells: int) -> dict[str, float]:
    async def big(n: int) -> str:
        return "y" * n

    kw: dict[str, Any] = {"timeout": 120, "max_output_chars": 2 * BIG}
    if kind != "subprocess" and os.path.exists("/usr/bin/python3"):
        kw["python"] = "/usr/bin/python3"
    if kind == "command":
        kw["command"] = ["nice", "-n", "1"]  # a local prefix: the command path, no network
    env = make_environment(kind, kw)
    t0 = time.perf_counter()
    await env.start("x" * 1_000_000, {"big": HostFunction("big", big)})
    start = time.perf_counter() - t0
    try:
        trips = []
        for _ in range(cells):
            t = time.perf_counter()
            await env.execute("x = 1")
            trips.append(time.perf_counter() - t)
        t = time.perf_counter()
        r = await env.execute(f"v = big({BIG})\nprint(len(v))")
        host = time.perf_counter() - t
        assert r.stdout.strip() == str(BIG), r
        t = time.perf_counter()
        r = await env.execute(f"print('z' * {BIG})")
        out = time.perf_counter() - t
        assert len(r.stdout) == BIG + 1, (len(r.stdout), r.error)
    finally:
        await env.close()
    return {"start": start, "cell": statistics.median(trips), "host10": host, "print10": out}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=50)
    args = parser.parse_args()
    print("| kind | start | trivial cell (median) | 10 MB host result | 10 MB printed |")
    print("| --- | --- | --- | --- | --- |")
    for kind in ("subprocess", "modal", "prime", "e2b", "command"):
        mp = pytest.MonkeyPatch()
        ledger = CloudLedger()
        before = set(os.listdir("/tmp"))
        if kind in INSTALL:
            INSTALL[kind](mp, ledger)
        try:
            m = asyncio.run(measure(kind, args.cells))
        finally:
            ledger.kill_all()
            mp.undo()
            remove_remote_dirs(before)
        print(
            f"| {kind} | {m['start'] * 1000:.0f} ms | {m['cell'] * 1000:.2f} ms | "
            f"{m['host10'] * 1000:.0f} ms | {m['print10'] * 1000:.0f} ms |"
        )


if __name__ == "__main__":
    main()
