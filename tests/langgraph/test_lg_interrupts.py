"""Human in the loop: static ``interrupt_before=["execute"]`` and ``review_code=True``."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from lg_support import ANSWER, QUESTION

from rlm_integrations.langgraph import build_rlm_graph
from rlm_integrations.langgraph.review import apply_review, with_code


def _cfg(name: str) -> dict:
    return {"configurable": {"thread_id": name}}


def test_interrupt_before_execute_shows_code_and_resumes(graph_kwargs, haystack):
    app = build_rlm_graph(**graph_kwargs).compile(
        checkpointer=InMemorySaver(), interrupt_before=["execute"]
    )
    cfg = _cfg("static")
    app.invoke({"context": haystack, "query": QUESTION}, cfg)
    pauses = []
    while app.get_state(cfg).next:
        snap = app.get_state(cfg)
        assert snap.next == ("execute",)
        pauses.append(snap.values["pending_response"])
        app.invoke(Command(resume=True), cfg)
    values = app.get_state(cfg).values
    assert values["final_answer"] == ANSWER
    assert len(pauses) == values["iteration"] == 2
    assert "llm_query_batched" in pauses[0]  # the person saw the code before it ran
    assert [h["response"] for h in values["history"]] == pauses


def test_interrupt_before_execute_with_edited_response(graph_kwargs, haystack, scripted_server):
    app = build_rlm_graph(**graph_kwargs).compile(
        checkpointer=InMemorySaver(), interrupt_before=["execute"]
    )
    cfg = _cfg("static-edit")
    app.invoke({"context": haystack, "query": QUESTION}, cfg)
    edited = "Checked by a person.\n```repl\nn = len(context)\nprint('chars', n)\n```"
    app.update_state(cfg, {"pending_response": edited})
    app.invoke(None, cfg)  # runs the edited cell, then pauses before the next execute
    values = app.get_state(cfg).values
    assert values["history"][0]["response"] == edited
    assert values["history"][0]["code_blocks"][0]["stdout"].strip() == f"chars {len(haystack)}"
    assert scripted_server.stats.by_model.get("scripted-sub", 0) == 0  # original cell never ran


def test_review_code_interrupt_approve(graph_kwargs, haystack):
    app = build_rlm_graph(**graph_kwargs, review_code=True).compile(checkpointer=InMemorySaver())
    cfg = _cfg("review")
    out = app.invoke({"context": haystack, "query": QUESTION}, cfg)
    reviews = 0
    while "__interrupt__" in out:
        payload = out["__interrupt__"][0].value
        assert payload["kind"] == "rlm_code_review"
        assert payload["iteration"] == reviews + 1
        assert payload["code"] and payload["code"][0] in payload["response"]
        reviews += 1
        out = app.invoke(Command(resume=True), cfg)
    assert out["final_answer"] == ANSWER
    assert reviews == out["iteration"] == 2


def test_review_code_interrupt_with_edited_code(graph_kwargs, haystack, scripted_server):
    app = build_rlm_graph(**graph_kwargs, review_code=True).compile(checkpointer=InMemorySaver())
    cfg = _cfg("review-edit")
    out = app.invoke({"context": haystack, "query": QUESTION}, cfg)
    assert "__interrupt__" in out
    code = "hits = [ln for ln in context.splitlines() if 'secret' in ln]\nFINAL(hits[0])"
    out = app.invoke(Command(resume={"code": code}), cfg)
    assert out["status"] == "final"
    assert out["final_answer"] == f"The secret code is {ANSWER}."
    ran = out["history"][0]
    assert ran["code_blocks"][0]["code"].strip() == code
    assert "llm_query_batched" not in ran["response"]  # the root LM later sees what ran
    assert scripted_server.stats.by_model.get("scripted-sub", 0) == 0


def test_apply_review_decisions():
    response = "Plan.\n```repl\nprint(1)\n```\nFINAL_VAR(x)"
    assert apply_review(response, True) is response
    assert apply_review(response, None) is response
    assert apply_review(response, {"approve": True}) is response
    assert apply_review(response, "x = 2") == "Plan.\n\nFINAL_VAR(x)\n```repl\nx = 2\n```"
    assert apply_review(response, {"code": "x = 3"}) == with_code(response, "x = 3")
    assert apply_review(response, {"response": "FINAL(no)"}) == "FINAL(no)"
    with pytest.raises(ValueError, match="Command\\(resume=True\\)"):
        apply_review(response, 42)
