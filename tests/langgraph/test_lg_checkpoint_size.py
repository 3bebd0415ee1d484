"""Checkpoint growth with a 50 MB context under SqliteSaver.

The context must be stored once (LangGraph keeps the raw input in the input checkpoint,
and the context channel's single write), and each later step must add only about what
that step produced, however large the context is.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict

from langgraph.checkpoint.sqlite import SqliteSaver

from rlm_engine.scripted import Reply
from rlm_integrations.langgraph import build_rlm_graph

CONTEXT_CHARS = 50_000_000
PRINTED = [1_000, 4_000, 16_000, 2_000]  # characters each iteration prints
STEP_OVERHEAD = 6_000  # bytes: checkpoint bookkeeping, scalars, usage summary, metadata


def _script_root(scripted_model) -> None:
    def respond(req) -> Reply:
        if req.turn < len(PRINTED):
            n = PRINTED[req.turn]
            return Reply(f"Step {req.turn + 1}.\n```repl\nprint(context[:{n}])\n```")
        return Reply("FINAL(done)")

    scripted_model.add_rule(lambda r: r.is_rlm_root, respond)


def _stored_bytes(conn: sqlite3.Connection) -> list[tuple[int, str, int]]:
    """(step, source, bytes) per checkpoint: its blob, metadata and the writes after it."""
    writes: dict[str, int] = defaultdict(int)
    for cid, size in conn.execute(
        "SELECT checkpoint_id, SUM(LENGTH(value)) FROM writes "
        "WHERE checkpoint_ns = '' GROUP BY checkpoint_id"
    ):
        writes[cid] = size
    rows = []
    for cid, blob, meta in conn.execute(
        "SELECT checkpoint_id, LENGTH(checkpoint), metadata FROM checkpoints "
        "WHERE checkpoint_ns = '' ORDER BY checkpoint_id"
    ):
        info = json.loads(meta)
        rows.append((info["step"], info["source"], blob + len(meta) + writes.get(cid, 0)))
    return rows


def test_checkpoint_growth_per_iteration_is_its_output_not_the_context(
    tmp_path, graph_kwargs, scripted_model
):
    _script_root(scripted_model)
    context = "".join(chr(97 + i % 26) for i in range(26)) * (CONTEXT_CHARS // 26 + 1)
    context = context[:CONTEXT_CHARS]
    conn = sqlite3.connect(tmp_path / "cp.sqlite", check_same_thread=False)
    app = build_rlm_graph(**graph_kwargs).compile(checkpointer=SqliteSaver(conn))
    cfg = {"configurable": {"thread_id": "big"}}

    history_bytes: list[int] = []
    for update in app.stream(
        {"context": context, "query": "Print some of it."}, cfg, stream_mode="updates"
    ):
        for entry in (update.get("execute") or {}).get("history", []):
            history_bytes.append(len(json.dumps(entry)))
    values = app.get_state(cfg).values
    assert values["status"] == "final" and values["final_answer"] == "done"
    assert len(values["context"]) == CONTEXT_CHARS  # rebuilt from its single write

    rows = _stored_bytes(conn)
    total = sum(size for _, _, size in rows)
    # The input checkpoint holds the raw input (LangGraph's __start__ channel) and the
    # context channel's single write: the context twice, once each, at the start.
    (_, source, first), *later = rows
    assert source == "input" and 2 * CONTEXT_CHARS <= first < 2 * CONTEXT_CHARS + 10_000
    per_step = [size for _, _, size in later]
    # 3 steps per iteration (generate, execute, check_final), then generate + check_final
    per_iteration = [sum(per_step[i : i + 3]) for i in range(0, 3 * len(PRINTED), 3)]
    printed_entries = history_bytes[: len(PRINTED)]  # the last entry is the FINAL turn
    overhead = [g - e for g, e in zip(per_iteration, printed_entries, strict=True)]
    print("\nbytes per step:", per_step)
    print("bytes per iteration:", per_iteration, "of which the history entry:", history_bytes)
    print(f"total stored: {total:,} bytes for a {CONTEXT_CHARS:,}-character context")

    assert all(0 < extra < 3 * STEP_OVERHEAD for extra in overhead)
    assert max(overhead[1:]) - min(overhead[1:]) < 1_000  # the rest is a constant per step
    assert max(per_step) < max(history_bytes) + STEP_OVERHEAD  # no step re-stores the context
    assert total < 2 * CONTEXT_CHARS + sum(history_bytes) + len(rows) * STEP_OVERHEAD
