"""Pins on the LangGraph behaviour the integration relies on beyond its stable public API.

The integration imports no private name: its nodes are langchain-core ``RunnableLambda``
s (sync and async body) that read the LangGraph runtime with the public
``langgraph.runtime.get_runtime()``. What remains is :class:`WriteOnceChannel`: it
extends the beta ``DeltaChannel`` and must recognise LangGraph's "no value" sentinel,
whose home is private. If one of these tests fails, LangGraph changed something that
``rlm_integrations/langgraph/state.py`` depends on; the message says what.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Annotated, Any

import pytest
from langgraph.channels import DeltaChannel
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from rlm_integrations.langgraph import state as lg_state
from rlm_integrations.langgraph.state import WriteOnceChannel

PACKAGE = Path(lg_state.__file__).resolve().parents[1]  # rlm_integrations/


def _private(module: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in module.split("."))


#: Private imports on their way out: ``chat_model.py``'s rewrite imports ``with_model``.
def test_integrations_import_no_private_names() -> None:
    """No ``from pkg._private import x`` and no ``from pkg import _x``, in any integration."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                if _private(node.module):
                    found.append(f"{where}: {node.module}")
                found += [f"{where}: {a.name}" for a in node.names if _private(a.name)]
            elif isinstance(node, ast.Import):
                found += [f"{where}: {a.name}" for a in node.names if _private(a.name)]
    assert not found, f"private imports (use a public API, or document and pin): {found}"


def test_missing_sentinel_is_langgraphs() -> None:
    """``state.MISSING`` (read from the public ``DeltaChannel.checkpoint()``) is the object
    LangGraph passes to ``from_checkpoint`` for a channel a checkpoint does not hold."""
    try:
        from langgraph._internal._typing import MISSING as upstream  # the pin itself
    except ImportError:  # pragma: no cover - only when upstream moves it
        pytest.fail(
            "langgraph moved its MISSING sentinel out of langgraph._internal._typing: check "
            "that DeltaChannel.checkpoint() still returns the object LangGraph passes to "
            "from_checkpoint() for absent channels, then update this pin."
        )
    assert lg_state.MISSING is upstream, (
        "DeltaChannel.checkpoint() no longer returns LangGraph's MISSING sentinel, so "
        "WriteOnceChannel.from_checkpoint() cannot tell an unwritten channel from a value: "
        "find the new public way to recognise it in rlm_integrations/langgraph/state.py."
    )


def test_delta_channel_constructor_is_as_relied_on() -> None:
    """LangGraph re-creates channels as ``cls(reducer, typ, snapshot_frequency=...)``."""
    params = inspect.signature(DeltaChannel.__init__).parameters
    assert list(params)[:3] == ["self", "reducer", "typ"] and "snapshot_frequency" in params, (
        f"DeltaChannel's constructor changed ({list(params)}): WriteOnceChannel.__init__, "
        "copy() and from_checkpoint() build channels with the old one."
    )


def test_write_once_channel_round_trips() -> None:
    ch = WriteOnceChannel()
    ch.key = "context"
    assert not ch.is_available()
    assert ch.checkpoint() is lg_state.MISSING  # a delta channel checkpoints no value
    restored = ch.from_checkpoint(ch.checkpoint())
    assert not restored.is_available(), "an unwritten channel must stay unset, not typ()"
    assert restored.key == "context"
    assert ch.update(["big text"]) and ch.get() == "big text"
    assert ch.update(["newer"]) and ch.get() == "newer"  # set, not accumulated
    assert ch.copy().get() == "newer"
    replayed = ch.from_checkpoint(lg_state.MISSING)
    replayed.replay_writes([("task", "context", "a"), ("task", "context", "b")])
    assert replayed.get() == "b"


class _State(TypedDict, total=False):
    blob: Annotated[Any, WriteOnceChannel()]
    items: Annotated[list[int], DeltaChannel(lg_state.append_items)]
    step: int


def test_write_once_channel_in_a_checkpointed_graph() -> None:
    """Unset until written, then written once and rebuilt from the writes on load."""

    def first(state: _State) -> dict[str, Any]:
        assert "blob" not in state  # never written: absent, not "" or None
        return {"blob": {"k": 1}, "items": [1], "step": 1}

    def second(state: _State) -> dict[str, Any]:
        return {"items": [2], "step": 2}

    g = StateGraph(_State)
    g.add_node("first", first)
    g.add_node("second", second)
    g.add_edge(START, "first")
    g.add_edge("first", "second")
    g.add_edge("second", END)
    saver = InMemorySaver()
    app = g.compile(checkpointer=saver)
    cfg = {"configurable": {"thread_id": "pin"}}
    out = app.invoke({"step": 0}, cfg)
    assert out == {"blob": {"k": 1}, "items": [1, 2], "step": 2}
    # A fresh graph on the same saver rebuilds the delta channels from the writes.
    assert g.compile(checkpointer=saver).get_state(cfg).values == out
    # The last checkpoint does not hold the write-once value again.
    last = saver.get_tuple(cfg)
    assert last is not None
    assert "blob" not in last.checkpoint["channel_values"]
