"""Run or resume one RLM graph thread with a SqliteSaver, as a separate process.

Used by ``test_lg_crash_resume.py``: the test kills this process with SIGKILL mid-run,
then starts it again on the same database and thread to finish the run. Prints one JSON
line with the outcome.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver

from rlm_integrations.langgraph import REGISTRY, build_rlm_graph


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--db", required=True)
    p.add_argument("--base-url", required=True)
    p.add_argument("--thread", required=True)
    p.add_argument("--context-file", help="start a run on this file; omit to resume")
    p.add_argument("--query")
    args = p.parse_args()

    def model(name: str) -> dict:
        return {
            "model_name": name,
            "base_url": args.base_url,
            "api_key": "sk-test",
            "max_retries": 0,
        }

    replayed: list[dict] = []
    graph = build_rlm_graph(
        backend="openai",
        backend_kwargs=model("scripted-root"),
        sub_backend="openai",
        sub_backend_kwargs=model("scripted-sub"),
        max_iterations=6,
        on_event=lambda e: replayed.append(e) if e.get("replayed") else None,
    )
    conn = sqlite3.connect(args.db, check_same_thread=False)
    app = graph.compile(checkpointer=SqliteSaver(conn))
    cfg = {"configurable": {"thread_id": args.thread}}
    inputs = None
    if args.context_file:
        inputs = {"context": Path(args.context_file).read_text(), "query": args.query}
    out = app.invoke(inputs, cfg, durability="sync")
    print(
        json.dumps(
            {
                "final_answer": out.get("final_answer"),
                "status": out.get("status"),
                "iteration": out.get("iteration"),
                "rebuilds": REGISTRY.rebuilds,
                "replayed_subcalls": len(replayed),
                "sub_calls_in_usage": out["usage"]["sub"]["calls"],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
