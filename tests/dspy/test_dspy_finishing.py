"""RLMModule finishes with SUBMIT: what the engine tells its root follows that convention,
and the engine's last-answer request reaches it as a flag, not as a text to recognize."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import dspy
import pytest
from dspy_support import chat_reply, is_rlm_turn

from rlm_engine import prompts
from rlm_engine.partial_answer import final_answer_request, is_final_answer_request
from rlm_integrations.dspy import RLMModule, RLMRunError
from rlm_integrations.dspy.lm_client import settings_snapshot
from rlm_integrations.dspy.predictor_clients import RootTurnClient, TurnSetup


class Count(dspy.Signature):
    """Count what the question asks about."""

    document: str = dspy.InputField()
    question: str = dspy.InputField()
    answer: int = dspy.OutputField()
    note: str = dspy.OutputField()


@pytest.mark.parametrize(
    ("options", "wording"),
    [
        ({}, "call SUBMIT(answer=..., note=...) in your code"),  # the module's own
        ({"finish_hint": "end with SUBMIT(...)"}, "end with SUBMIT(...)"),  # the user's wins
    ],
)
def test_a_sub_call_over_budget_tells_the_root_to_submit(
    dspy_model, with_root_lm, options, wording
):
    """The budget message is REPL output the root reads: it names SUBMIT, not FINAL."""
    dspy_model.add_rule(
        is_rlm_turn, chat_reply(reasoning="Ask.", code="print(llm_query('How many?'))")
    )
    rlm = RLMModule(Count, max_llm_calls=1, **options)
    with pytest.raises(RLMRunError, match="status 'budget'") as info:
        rlm(document="short", question="How many?")
    result = info.value.result
    assert result is not None
    stdout = result.iterations[0].code_blocks[0].stdout
    assert "budget exhausted" in stdout and f"Finish with what you have: {wording}." in stdout
    assert "FINAL" not in stdout
    assert rlm.config.repl.finish_hint == options.get("finish_hint")  # set per call only
    assert "`SUBMIT(answer=..., note=...)`" in rlm.root.signature.instructions


def test_the_last_answer_request_is_recognized_by_the_engines_flag_not_its_text(
    with_root_lm,
):
    rlm = RLMModule(Count)
    client = RootTurnClient(
        rlm.root,
        rlm.extract,
        Count,
        TurnSetup(
            variables_info="`document` (str, 5 characters)", max_iterations=3, runtime_note=""
        ),
        snapshot=settings_snapshot(),
    )
    client.bind(SimpleNamespace(state=SimpleNamespace(iterations=[])))  # type: ignore[arg-type]
    request = [{"role": "user", "content": prompts.FINAL_ANSWER_REQUEST}]
    other_words = [{"role": "user", "content": "Time is up: answer now."}]

    async def ask(messages, flagged: bool) -> str:
        if flagged:
            with final_answer_request():
                assert is_final_answer_request()
                return (await client.acomplete(messages)).text
        assert not is_final_answer_request()
        return (await client.acomplete(messages)).text

    # Flagged: the extract predictor answers (a FINAL with the output fields), whatever
    # the request says. Not flagged: a root turn (code), even if the text is the same.
    assert asyncio.run(ask(other_words, flagged=True)).startswith("FINAL(")
    assert "```repl" in asyncio.run(ask(request, flagged=False))


async def test_the_flag_is_set_only_around_the_flagged_call():
    seen: list[bool] = []

    async def elsewhere() -> None:
        await asyncio.sleep(0)
        seen.append(is_final_answer_request())

    other = asyncio.ensure_future(elsewhere())  # a task started outside the block
    with final_answer_request():
        inner = asyncio.ensure_future(elsewhere())  # one started inside it
        await asyncio.gather(other, inner)
    assert sorted(seen) == [False, True]
    assert not is_final_answer_request()


def test_feedback_wording_follows_the_finish_hint():
    hint = "call SUBMIT(answer=...) in your code"
    feedback = prompts.repl_feedback(["3"], 1, 4, hint)
    assert f"Continue with more code, or {hint} when you have the answer." in feedback
    assert "FINAL" not in feedback
    assert hint in prompts.no_code_message(hint) and "FINAL" not in prompts.no_code_message(hint)
    missing = prompts.missing_variable_message("x", {"y": "int"}, hint)
    assert missing.endswith(f"or {hint}.")
    assert "FINAL_VAR(x) failed" in missing  # the directive it answers keeps its name
    assert hint in prompts.budget_exhausted_message("max_llm_calls", hint)
    # The default is the engine's own convention; child RLMs (depth > 0) always use it:
    # their REPLs do not run the form's set-up (no SUBMIT there).
    for text in (
        prompts.repl_feedback(["3"], 1, 4),
        prompts.NO_CODE_MESSAGE,
        prompts.missing_variable_message("x", {}),
        prompts.budget_exhausted_message("max_llm_calls"),
    ):
        assert "FINAL(...) / FINAL_VAR(name)" in text
    assert prompts.finish_hint(hint, depth=0) == hint
    assert prompts.finish_hint(hint, depth=1) == prompts.FINISH_HINT
    assert prompts.finish_hint(None) == prompts.FINISH_HINT


def test_turn_feedback_in_the_trajectory_names_submit(dspy_model, with_root_lm):
    turns = iter(
        [
            chat_reply(reasoning="Look.", code="print(len(document))"),
            chat_reply(reasoning="I only think this turn.", code=""),
            chat_reply(reasoning="Done.", code="SUBMIT(answer=5, note='ok')"),
        ]
    )
    dspy_model.add_rule(is_rlm_turn, lambda req: next(turns), times=3)
    pred = RLMModule(Count)(document="short", question="How many?")
    printed, no_code = (it["feedback"] for it in pred.trajectory[:2])
    for feedback in (printed, no_code):
        assert "call SUBMIT(answer=..., note=...) in your code" in feedback
        assert "FINAL" not in feedback
