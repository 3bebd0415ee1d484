"""The RLM graph on the real LangGraph Server (``langgraph dev``, in-memory runtime).

    uv run python benchmarks/bench_langgraph_server.py [--mb 10] [--runs 3]

Against the scripted model behind a real HTTP server on 127.0.0.1 (no model latency, so
the numbers are the server's and the engine's own cost). Reported:

- the server's start-up (process start to ``/ok``);
- one needle-in-a-haystack run (2 iterations, ~1 sub-call per 50 KB) over the API, context
  inline and by ``context_ref`` (a file the server reads), against the same graph compiled
  in this process with an ``InMemorySaver`` (medians of ``--runs``);
- what the server writes to ``.langgraph_api/`` for one such thread (threads, runs,
  checkpoints), inline and by reference, after a graceful stop;
- a restart between two nodes: the time of the step that rebuilds the REPL by replay, and
  the sub-calls the model server saw again (none).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "langgraph"))

from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph_sdk import get_sync_client  # noqa: E402
from lg_server import LangGraphDev, server_env, subs  # noqa: E402
from lg_support import ANSWER, QUESTION, make_haystack  # noqa: E402

from rlm_engine.scripted import ScriptedServer  # noqa: E402
from rlm_integrations.langgraph import build_rlm_graph  # noqa: E402
from rlm_integrations.langgraph.server_config import served_config  # noqa: E402


def _persisted(workdir: Path) -> int:
    return sum(p.stat().st_size for p in (workdir / ".langgraph_api").rglob("*") if p.is_file())


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _run_once(client: Any, inp: dict[str, Any]) -> float:
    thread = client.threads.create()["thread_id"]
    t0 = time.perf_counter()
    out = client.runs.wait(thread, "rlm", input={**inp, "query": QUESTION})
    assert out["final_answer"] == ANSWER, out
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=10.0, help="context size in MB (default 10)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    lines = max(1000, int(args.mb * 1e6 / 57))  # make_haystack: ~57 chars per line pair
    haystack = make_haystack(lines)
    print(f"context: {len(haystack) / 1e6:.1f} MB")

    with ScriptedServer() as lm, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "docs").mkdir()
        (root / "docs" / "h.txt").write_text(haystack)
        env = server_env(lm, root / "docs")
        ref = {"path": str(root / "docs" / "h.txt")}

        # in process, the same configuration
        config = served_config({}, env=env)
        app = build_rlm_graph(config).compile(checkpointer=InMemorySaver())

        def local(i: int) -> None:
            out = app.invoke(
                {"context": haystack, "query": QUESTION}, {"configurable": {"thread_id": str(i)}}
            )
            assert out["final_answer"] == ANSWER

        in_process = statistics.median(_timed(lambda i=i: local(i)) for i in range(args.runs))

        results: dict[str, float] = {}
        persisted: dict[str, int] = {}
        for kind, inp in (("inline", {"context": haystack}), ("context_ref", {"context_ref": ref})):
            work = root / kind
            work.mkdir()
            dev = LangGraphDev(work, env)
            start = _timed(dev.start)
            client = get_sync_client(url=dev.url, timeout=600)
            try:
                first = client.threads.create()["thread_id"]
                out = client.runs.wait(first, "rlm", input={**inp, "query": QUESTION})
                assert out["final_answer"] == ANSWER, out
                times = [_run_once(client, inp) for _ in range(args.runs)]
                results[kind] = statistics.median(times)
                threads = 1 + args.runs
            finally:
                dev.stop()
            persisted[kind] = _persisted(work) // threads
            print(f"server start-up ({kind} server): {start:.2f} s")

        # restart between two nodes
        lm.reset_stats()
        work = root / "restart"
        work.mkdir()
        dev = LangGraphDev(work, env).start()
        client = get_sync_client(url=dev.url, timeout=600)
        thread = client.threads.create()["thread_id"]
        paused = {"interrupt_before": ["execute"]}
        client.runs.wait(thread, "rlm", input={"context_ref": ref, "query": QUESTION}, **paused)
        client.runs.wait(thread, "rlm", input=None, **paused)
        before = subs(lm)
        dev.stop()
        dev = LangGraphDev(work, env).start()
        client = get_sync_client(url=dev.url, timeout=600)
        t0 = time.perf_counter()
        out = client.runs.wait(thread, "rlm", input=None)
        resume = time.perf_counter() - t0
        dev.stop()
        assert out["final_answer"] == ANSWER
        again = subs(lm) - before - 1  # the aggregate sub-call is new work

    print(f"run in process (InMemorySaver):   {in_process:.2f} s")
    print(f"run over the API, inline context: {results['inline']:.2f} s")
    print(f"run over the API, context_ref:    {results['context_ref']:.2f} s")
    print(f"persisted per thread, inline:      {persisted['inline'] / 1e6:.2f} MB")
    print(f"persisted per thread, context_ref: {persisted['context_ref'] / 1e6:.2f} MB")
    print(
        f"resume after restart (replay + last iteration): {resume:.2f} s; "
        f"sub-calls asked again: {again} of {before}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
