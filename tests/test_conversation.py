"""Conversations: one REPL across turns, against the real HTTP scripted server.

Turn 2 uses what turn 1 computed (no sub-call is made again), a follow-up that needs no
material costs one root call, later material gets its own variable, and a conversation's
data rebuilds its REPL in a new conversation without paying for sub-calls again.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from rlm_engine import RLM
from rlm_engine.conversation import HISTORY_VARIABLE, Conversation
from rlm_engine.scripted import ScriptedModel, ScriptedServer

DOC = "\n".join(f"record {i}: value={i * 7}" for i in range(40))


def root(model: ScriptedModel, responses: list[str], *, when: str) -> None:
    """Script the root's replies for requests whose opening message contains ``when``."""
    model.add_rule(lambda r: r.is_rlm_root and when in r.first_user, responses)


def sub_calls(server: ScriptedServer) -> int:
    return sum(1 for r in server.stats.log if r.model == "scripted-sub" and r.status == 200)


def root_calls(server: ScriptedServer) -> int:
    return sum(1 for r in server.stats.log if r.model == "scripted-root" and r.status == 200)


@pytest.fixture
def rlm(scripted_server: ScriptedServer) -> RLM:
    return RLM(
        backend="openai",
        model="scripted-root",
        sub_model="scripted-sub",
        base_url=scripted_server.base_url,
        api_key="sk-test",
        environment="local",
    )


TURN_1 = (
    "```repl\nchunks = [context[i:i + 300] for i in range(0, len(context), 300)]\n"
    "notes = llm_query_batched([f'Summarize: {c}' for c in chunks])\n"
    "print(len(notes))\n```"
)


@pytest.mark.parametrize("environment", ["local", "subprocess"])
def test_turn_two_uses_turn_one_variables_without_new_sub_calls(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer, environment: str
) -> None:
    rlm = RLM(
        backend="openai",
        model="scripted-root",
        sub_model="scripted-sub",
        base_url=scripted_server.base_url,
        api_key="sk-test",
        environment=environment,
    )
    root(scripted_model, [TURN_1, "FINAL_VAR(count_text)"], when="How many notes")
    scripted_model.add_rule(
        lambda r: r.is_rlm_root and "How many notes" in r.first_user and "[block" in r.last_user,
        ["```repl\ncount_text = str(len(notes))\n```", "FINAL_VAR(count_text)"],
    )
    root(
        scripted_model,
        ["```repl\nfirst = notes[0][:20]\nprint(first)\n```", "FINAL_VAR(first)"],
        when="first note",
    )
    with rlm.conversation(DOC) as conv:
        one = conv.send("How many notes are there?")
        made = sub_calls(scripted_server)
        assert one.status == "final" and made > 0
        two = conv.send("What does the first note start with?")
        assert two.status == "final" and two.response
        assert sub_calls(scripted_server) == made  # turn 2 reused `notes`
        assert "notes" in conv.turns[0].variables
        three = conv.send("How many notes again, as a number?")
    assert three.status == "final"


def test_a_follow_up_that_needs_no_material_costs_one_root_call(
    rlm: RLM, scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    root(scripted_model, ["```repl\nx = llm_query('hi')\nFINAL(x)\n```"], when="Say hi")
    root(scripted_model, ["FINAL(You're welcome!)"], when="Thanks!")
    with rlm.conversation(DOC) as conv:
        conv.send("Say hi through a sub-model.")
        roots, subs = root_calls(scripted_server), sub_calls(scripted_server)
        res = conv.send("Thanks!")
        assert res.response == "You're welcome!"
        assert root_calls(scripted_server) == roots + 1
        assert sub_calls(scripted_server) == subs
        # The follow-up's opening message carries the digest, not the transcript, and
        # does not force another look at the material.
        opening = scripted_server.stats.log[-1]
        assert opening.status == 200
    first_user = conv.turns[1].state["first_user"]
    assert "Say hi through a sub-model." in first_user and "answer at once" in first_user
    assert "not looked at the context" not in first_user


def test_later_material_gets_its_own_variable(rlm: RLM, scripted_model: ScriptedModel) -> None:
    root(
        scripted_model,
        ["```repl\nprint(type(context_1).__name__, len(context), context_1[:5])\n```", "FINAL(ok)"],
        when="context_1",
    )
    with rlm.conversation(DOC) as conv:
        name = conv.add_context(["alpha", "beta"])
        assert name == "context_1"
        res = conv.send("Compare context_1 with context.")
        assert res.status == "final"
        out = res.iterations[0].code_blocks[0].stdout
        assert out.strip() == f"list {len(DOC)} ['alpha', 'beta']"
        names = [c.name for c in conv.contexts]
        assert names == ["context", "context_1"]
        with pytest.raises(ValueError, match="identifier"):
            conv.add_context("x", name="not a name")


def test_history_variable_holds_earlier_turns(rlm: RLM, scripted_model: ScriptedModel) -> None:
    root(scripted_model, ["```repl\nanswer_1 = 42\n```", "FINAL(42)"], when="first question")
    root(
        scripted_model,
        [
            f"```repl\nprint({HISTORY_VARIABLE}[0]['query'], {HISTORY_VARIABLE}[0]['answer'])\n```",
            "FINAL(done)",
        ],
        when="second question",
    )
    with rlm.conversation(DOC) as conv:
        conv.send("The first question?")
        res = conv.send("The second question?")
    assert res.iterations[0].code_blocks[0].stdout.strip() == "The first question? 42"


def test_restore_replays_without_paying_again(
    rlm: RLM, scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    root(
        scripted_model,
        [TURN_1, "```repl\ncount_text = str(len(notes))\n```", "FINAL_VAR(count_text)"],
        when="How many notes",
    )
    root(
        scripted_model,
        ["```repl\nprint(len(notes), context_1)\n```", "FINAL(seen)"],
        when="Look again",
    )
    with rlm.conversation(DOC) as conv:
        conv.send("How many notes are there?")
        conv.add_context("extra material")
        data = json.loads(json.dumps(conv.to_dict()))  # plain JSON, as a store would keep it
    paid = len(scripted_server.stats.log)

    restored = Conversation.restore(
        rlm.config, data, {"context": DOC, "context_1": "extra material"}
    )
    try:
        assert len(scripted_server.stats.log) == paid  # replay served recorded answers
        res = restored.send("Look again at the notes.")
        assert res.status == "final"
        out = res.iterations[0].code_blocks[0].stdout.strip()
        assert out == f"{len(DOC) // 300 + 1} extra material"
    finally:
        restored.send  # noqa: B018 - the object stays usable until closed
        from rlm_engine.aio import run_sync

        run_sync(restored.aclose())


def test_restore_needs_every_context(rlm: RLM, scripted_model: ScriptedModel) -> None:
    root(scripted_model, ["FINAL(a)"], when="Question")
    with rlm.conversation(DOC) as conv:
        conv.send("Question?")
        data: dict[str, Any] = conv.to_dict()
    with pytest.raises(ValueError, match="needs the contexts"):
        Conversation.restore(rlm.config, data, {})


def test_restore_refuses_other_material(rlm: RLM, scripted_model: ScriptedModel) -> None:
    """Replay re-runs the recorded code over what it is given and serves the recorded
    sub-call answers: over another document it would rebuild a REPL whose variables and
    answers disagree, silently. The description kept for each context must match."""
    root(scripted_model, ["FINAL(a)"], when="Question")
    with rlm.conversation(DOC) as conv:
        conv.send("Question?")
        data: dict[str, Any] = conv.to_dict()
    with pytest.raises(ValueError, match="not the material this conversation was made over"):
        Conversation.restore(rlm.config, data, {"context": DOC + " edited"})


def test_an_empty_follow_up_is_refused_before_any_call(
    rlm: RLM, scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    root(scripted_model, ["FINAL(a)"], when="Question")
    with rlm.conversation(DOC) as conv:
        conv.send("Question?")
        sent = len(scripted_server.stats.log)
        with pytest.raises(ValueError, match="needs a query"):
            conv.send("   ")
    assert len(scripted_server.stats.log) == sent
