"""``context_ref`` in process: the context is read only when a REPL is built, never stored
in a checkpoint (SqliteSaver bytes measured), and a changed file starts a new conversation."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.store.memory import InMemoryStore
from lg_support import ANSWER, QUESTION

from rlm_integrations.langgraph import REGISTRY, build_rlm_graph
from rlm_integrations.langgraph import context_ref as refs
from rlm_integrations.langgraph.runtime import run_blocking


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every time a reference is read."""
    seen: list[Any] = []
    real = refs.load

    def counting(ref: Any, store: Any, env: Any = None) -> Any:
        seen.append(ref)
        return real(ref, store, env)

    monkeypatch.setattr(refs, "load", counting)
    return seen


@pytest.fixture
def doc_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    monkeypatch.setenv(refs.DIRS_ENV, str(d))
    return d


def _db_bytes(conn: sqlite3.Connection) -> int:
    blobs = conn.execute(
        "SELECT COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0) FROM checkpoints"
    )
    writes = conn.execute("SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes")
    return int(blobs.fetchone()[0]) + int(writes.fetchone()[0])


def test_a_file_reference_is_read_once_and_never_checkpointed(
    tmp_path: Path, doc_dir: Path, haystack: str, graph_kwargs: dict[str, Any], loads: list[Any]
) -> None:
    (doc_dir / "h.txt").write_text(haystack)
    ref = {"path": str(doc_dir / "h.txt")}

    conn = sqlite3.connect(tmp_path / "ref.sqlite", check_same_thread=False)
    app = build_rlm_graph(**graph_kwargs).compile(checkpointer=SqliteSaver(conn))
    cfg = {"configurable": {"thread_id": "ref"}}
    out = app.invoke({"context_ref": ref, "query": QUESTION}, cfg)
    assert out["status"] == "final" and out["final_answer"] == ANSWER
    assert len(loads) == 1  # 6 node steps, one read: when the REPL was built
    by_ref = _db_bytes(conn)

    inline_conn = sqlite3.connect(tmp_path / "inline.sqlite", check_same_thread=False)
    inline = build_rlm_graph(**graph_kwargs).compile(checkpointer=SqliteSaver(inline_conn))
    inline.invoke({"context": haystack, "query": QUESTION}, {"configurable": {"thread_id": "i"}})
    by_value = _db_bytes(inline_conn)
    # inline: the input checkpoint and the context channel's write hold it (2x); by
    # reference only the run's own record is stored
    assert by_value - by_ref > 2 * len(haystack) * 0.99, (by_value, by_ref)
    assert by_ref < len(haystack) / 5, by_ref

    # a follow-up on the thread keeps the REPL without reading the file again...
    two = app.invoke({"query": "Repeat: " + QUESTION}, cfg)
    assert two["status"] == "final" and len(loads) == 1
    assert len(app.get_state(cfg).values["turns"]) == 2
    # ...until the file changes: then a new conversation reads the new content
    (doc_dir / "h.txt").write_text(haystack.replace(ANSWER, "9090"))
    os.utime(doc_dir / "h.txt", ns=(1, 1))
    three = app.invoke({"query": QUESTION}, cfg)
    assert three["final_answer"] == "9090" and len(loads) == 2
    assert len(app.get_state(cfg).values["turns"]) == 1


def test_a_lost_repl_is_rebuilt_from_the_reference(
    doc_dir: Path, haystack: str, graph_kwargs: dict[str, Any], loads: list[Any]
) -> None:
    (doc_dir / "h.txt").write_text(haystack)
    app = build_rlm_graph(**graph_kwargs).compile(
        checkpointer=InMemorySaver(), interrupt_before=["execute"]
    )
    cfg = {"configurable": {"thread_id": "lost"}}
    app.invoke({"context_ref": {"path": str(doc_dir / "h.txt")}, "query": QUESTION}, cfg)
    app.invoke(None, cfg)  # iteration 1 runs; paused before iteration 2's execute
    run_blocking(REGISTRY.aclose_all())  # as if the process had restarted
    rebuilds = REGISTRY.rebuilds
    out = app.invoke(None, cfg)
    assert out["final_answer"] == ANSWER
    assert REGISTRY.rebuilds == rebuilds + 1 and len(loads) == 2


def test_a_store_item_is_the_context(graph_kwargs: dict[str, Any], loads: list[Any]) -> None:
    store = InMemoryStore()
    store.put(("docs",), "d1", {"text": "The secret code is 4711."})
    app = build_rlm_graph(**graph_kwargs).compile(checkpointer=InMemorySaver(), store=store)
    ref = {"store": {"namespace": ["docs"], "key": "d1", "field": "text"}}
    out = app.invoke({"context_ref": ref, "query": QUESTION}, {"configurable": {"thread_id": "s"}})
    assert out["final_answer"] == ANSWER and len(loads) == 1


@pytest.mark.parametrize(
    ("ref", "env", "says"),
    [
        ({"path": "/etc/passwd"}, None, "this server reads no files"),
        ({"path": "/etc/passwd"}, "docs", "outside the directories"),
        ({"path": "docs/../../etc/passwd"}, "docs", "outside the directories"),
        ({"store": {"namespace": ["docs"], "key": "nope"}}, None, "no store item 'nope'"),
        ({"path": "a", "store": {}}, None, "context_ref must be"),
        ({"store": {"namespace": "docs", "key": "k"}}, None, "namespace"),
    ],
)
def test_bad_references_fail_before_any_lm_call(
    ref: dict[str, Any],
    env: str | None,
    says: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    graph_kwargs: dict[str, Any],
    scripted_server: Any,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(refs.DIRS_ENV, raising=False)
    if env is not None:
        (tmp_path / env).mkdir()
        monkeypatch.setenv(refs.DIRS_ENV, str(tmp_path / env))
    app = build_rlm_graph(**graph_kwargs).compile(
        checkpointer=InMemorySaver(), store=InMemoryStore()
    )
    with pytest.raises(refs.ContextRefError, match=says):
        app.invoke({"context_ref": ref, "query": "q"}, {"configurable": {"thread_id": "bad"}})
    assert scripted_server.stats.log == []
