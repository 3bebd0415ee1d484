"""The RLM loop as a LangGraph graph: stream it, checkpoint it, review its code.

    uv run python examples/langgraph_graph.py

Builds ``generate -> execute -> check_final`` with ``build_rlm_graph``, runs it over a
~700,000-character log with a SqliteSaver checkpointer, and prints each node step and
the engine's progress events as they stream. A second run pauses before every
``execute`` so a person can read the code first (``interrupt_before``), then resumes.

With ``OPENAI_API_KEY`` set it uses OpenAI (``RLM_MODEL`` / ``RLM_SUB_MODEL``, default
gpt-5-mini / gpt-5-nano); otherwise the offline scripted model on 127.0.0.1.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from rlm_integrations.langgraph import build_rlm_graph

QUESTION = "What is the vault access code?"


def make_log(lines: int = 20_000) -> str:
    services = ["auth", "billing", "search", "cache", "mailer"]
    rows = [f"2026-11-{1 + i % 28:02d} {services[i % 5]}: request {i} ok" for i in range(lines)]
    rows.insert(lines // 2, "2026-11-14 vault: the vault access code is 7731-ALPHA.")
    return "\n".join(rows)


@contextmanager
def backend() -> Iterator[dict[str, Any]]:
    """``build_rlm_graph`` keywords: OpenAI when a key is set, else the scripted server."""
    if os.environ.get("OPENAI_API_KEY"):
        yield {
            "backend_kwargs": {"model_name": os.environ.get("RLM_MODEL", "gpt-5-mini")},
            "sub_backend_kwargs": {"model_name": os.environ.get("RLM_SUB_MODEL", "gpt-5-nano")},
        }
        return
    from rlm_engine.scripted import ScriptedServer

    with ScriptedServer() as server:
        print(f"No OPENAI_API_KEY: using the scripted model at {server.base_url}\n")
        yield {
            "backend_kwargs": {"model_name": "scripted-root", "base_url": server.base_url},
            "sub_backend_kwargs": {"model_name": "scripted-sub", "base_url": server.base_url},
        }


def show(mode: str, data: dict[str, Any]) -> None:
    if mode == "updates":
        for node, update in data.items():
            keys = ", ".join(sorted(update or {})) or "-"
            print(f"  [{node}] wrote: {keys}")
        return
    kind = data["event"]
    if kind == "iteration_start":
        print(f"iteration {data['iteration']}")
    elif kind == "code_end":
        print(
            f"    code ran, {data['subcalls']} sub-calls, {data['usage']['calls']} LM calls so far"
        )
    elif kind == "final":
        print(f"  final: {data['response']!r} ({data['status']})")


def main() -> None:
    log = make_log()
    with backend() as kwargs, tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "rlm.sqlite"
        conn = sqlite3.connect(db, check_same_thread=False)
        graph = build_rlm_graph(backend="openai", max_iterations=10, **kwargs)
        app = graph.compile(checkpointer=SqliteSaver(conn))
        print(app.get_graph().draw_mermaid())

        cfg = {"configurable": {"thread_id": "log-1"}}
        print(f"Streaming a run over a {len(log):,}-character log:")
        for mode, data in app.stream(
            {"context": log, "query": QUESTION}, cfg, stream_mode=["updates", "custom"]
        ):
            show(mode, data)
        out = app.get_state(cfg).values
        total = out["usage"]["total"]
        print(f"\nAnswer: {out['final_answer']}  status={out['status']}")
        print(f"Usage: {total['calls']} LM calls, {total['total_tokens']:,} tokens")
        stored = sum(p.stat().st_size for p in Path(tmp).glob("rlm.sqlite*"))
        print(f"Checkpoint database (with WAL): {stored:,} bytes\n")

        review = graph.compile(checkpointer=SqliteSaver(conn), interrupt_before=["execute"])
        cfg = {"configurable": {"thread_id": "log-2"}}
        review.invoke({"context": log, "query": QUESTION}, cfg)
        while review.get_state(cfg).next:
            lines = review.get_state(cfg).values["pending_response"].splitlines()
            shown = "\n".join(lines[:10]) + (
                f"\n... ({len(lines) - 10} more lines)" if len(lines) > 10 else ""
            )
            print(f"Paused before execute. The root LM wants to run:\n{shown}\n")
            review.invoke(Command(resume=True), cfg)  # approve; or update_state to edit
        print("Reviewed run answer:", review.get_state(cfg).values["final_answer"])


if __name__ == "__main__":
    main()
