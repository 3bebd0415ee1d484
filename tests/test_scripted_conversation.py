"""The offline scripted root knows a conversation's later turns: a "Thanks!" is answered
at once, as the turn's prompt advises, instead of another read of the material (which
``rlm chat --backend scripted`` did, at the cost of a full chunked pass)."""

from __future__ import annotations

from rlm_engine import RLM
from rlm_engine.scripted.policy import COURTESY_ANSWER


def test_a_thanks_turn_is_answered_without_reading_the_material_again() -> None:
    doc = "\n".join(f"line {i}: filler" for i in range(3000)) + "\nThe vault code is 4711.\n"
    rlm = RLM(backend="scripted", environment="local")
    with rlm.conversation(doc) as conv:
        first = conv.send("What is the vault code?")
        thanks = conv.send("Thanks!")
        follow = conv.send("What is the vault code again?")
    assert first.response == "4711"
    assert thanks.response == COURTESY_ANSWER
    assert len(thanks.iterations) == 1 and thanks.iterations[0].code_blocks == []
    assert thanks.usage.sub.calls == 0
    assert follow.response == "4711" and follow.usage.sub.calls > 0  # questions still read
