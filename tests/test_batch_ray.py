"""Batch runs on Ray (one module-scoped local cluster): results equal the local run's, a
killed worker loses and duplicates nothing, and the one rate limit holds at the server."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlm_engine.batch import read_results, run_batch
from rlm_engine.batch.ray_executor import cluster
from rlm_engine.scripted.server import ScriptedServer
from tests.test_batch import (
    JITTER_FACTOR,
    QUERY,
    completions,
    engine,
    ids_in,
    peak_per_second,
    rows,
    span,
)
from tests.test_engine import haystack


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A local Ray cluster (2 CPUs at most, 4 workers, no dashboard), shut down after the
    module."""
    with cluster(None, workers=4):
        yield


def comparable(results: list) -> list[dict]:
    return sorted(({**r.to_dict(), "duration": None} for r in results), key=lambda d: d["id"])


def test_ray_batch_equals_local_batch(ray_cluster, tmp_path):
    batch = rows(48)
    for i in (48, 49):  # read by the worker that runs the row
        doc = tmp_path / f"doc{i}.txt"
        doc.write_text(haystack(6_000, secret=str(4000 + i), seed=i))
        batch.append({"id": f"r{i}", "context_path": str(doc), "query": QUERY,
                      "expected": str(4000 + i)})  # fmt: skip
    with ScriptedServer() as on_ray, ScriptedServer() as on_local:
        ray_out = tmp_path / "ray.jsonl"
        ray_summary = run_batch(batch, executor="ray", out=ray_out, concurrency=4, **engine(on_ray))
        local_summary = run_batch(batch, out=tmp_path / "local.jsonl", **engine(on_local))
        assert ray_summary.by_status == {"final": 50} and ray_summary.correct == 50
        assert comparable(read_results(ray_out)) == comparable(local_summary.results)
        assert ray_summary.calls == completions(on_ray) == completions(on_local)
        assert ray_summary.total_tokens == sum(on_ray.stats.tokens())


def _descendants(root: int) -> dict[int, int]:
    """pid -> parent pid of every process below ``root`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    below: dict[int, int] = {}
    frontier = {root}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier and p not in below}
        below.update({p: parents[p] for p in frontier})
    return below


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _kill_one_running_row(stop: threading.Event, killed: list[int]) -> None:
    """SIGKILL one Ray worker of this test's cluster after it has run a row for 1 s (its
    row takes 4 calls of 0.5 s, so it dies in the middle)."""
    seen: dict[int, float] = {}
    while not stop.is_set():
        for pid in _descendants(os.getpid()):
            if _title(pid).startswith("ray::_run_row"):
                first = seen.setdefault(pid, time.monotonic())
                if time.monotonic() - first >= 1.0:
                    os.kill(pid, signal.SIGKILL)  # only this worker: found below our pid
                    killed.append(pid)
                    return
            else:
                seen.pop(pid, None)
        stop.wait(0.05)


def test_killed_worker_loses_and_duplicates_nothing(ray_cluster, tmp_path):
    out = tmp_path / "out.jsonl"
    stop, killed = threading.Event(), []
    with ScriptedServer(latency=0.5) as server:
        watcher = threading.Thread(target=_kill_one_running_row, args=(stop, killed))
        watcher.start()
        try:
            summary = run_batch(rows(6), executor="ray", out=out, concurrency=3, **engine(server))
        finally:
            stop.set()
            watcher.join()
        assert killed, "no worker was running a row long enough to be killed"
        assert sorted(ids_in(out)) == sorted(f"r{i}" for i in range(6))  # once each
        assert summary.by_status == {"final": 6} and summary.correct == 6
        # the killed attempt had reached the server: the row was re-run, not skipped
        assert len(server.stats.completions()) > summary.calls


def test_one_rate_limit_for_the_whole_cluster(ray_cluster, tmp_path):
    with ScriptedServer() as server:
        summary = run_batch(
            rows(6), executor="ray", concurrency=4, requests_per_minute=600, **engine(server)
        )
        assert summary.by_status == {"final": 6}
        assert completions(server) == summary.calls == 24
        # 600/min = 10/s from every worker together, as the server saw them
        assert peak_per_second(server) <= 10 * JITTER_FACTOR
        assert span(server) >= 23 / 10 - 0.5


def test_traces_of_ray_rows_are_written_where_asked(ray_cluster, tmp_path):
    from rlm_engine.logger import RLMLogger

    with ScriptedServer() as server:
        summary = run_batch(
            rows(2), executor="ray", logger=RLMLogger(tmp_path / "logs"), **engine(server)
        )
    assert summary.by_status == {"final": 2}
    assert len(list((tmp_path / "logs").glob("*.jsonl"))) == 2  # one trace a row
