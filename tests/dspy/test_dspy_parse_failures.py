"""Replies DSPy's adapter cannot parse are bad turns, not failed runs, and are paid for.

A real model (a small open model on llama.cpp) sometimes answers an RLM turn without the
ChatAdapter's ``[[ ## field ## ]]`` markers; DSPy's ChatAdapter then retries the call with
the JSONAdapter, which fails too. Both requests were served and their tokens spent. The
scripted server answers like that model here, and counts every request it served.
"""

from __future__ import annotations

import json

import dspy
import pytest
from dspy_support import chat_reply, is_rlm_turn

from rlm_engine.scripted import Request, ScriptedModel
from rlm_engine.scripted.server import ScriptedServer
from rlm_integrations.dspy import RLMModule, RLMRunError
from rlm_integrations.dspy.parse_failures import MAX_CONSECUTIVE_PARSE_FAILURES

#: A plain-prose reply: no field markers, not JSON.
UNPARSEABLE = "Let me look at the document first and then I will answer the question."


class Vault(dspy.Signature):
    """Answer the question about the document."""

    document: str = dspy.InputField()
    question: str = dspy.InputField()
    answer: int = dspy.OutputField()


def is_root_request(req: Request) -> bool:
    """A root-turn request in either format (ChatAdapter, or its JSONAdapter fallback)."""
    return "`repl_history`" in req.system and "`iteration`" in req.system


def unparseable_root_turns(model: ScriptedModel, turns: int) -> None:
    """The next ``turns`` root turns answer in prose, the JSON fallback request included."""
    model.add_rule(is_root_request, UNPARSEABLE, times=2 * turns)


def served_usage(server: ScriptedServer, model: str) -> tuple[int, int, int]:
    """(requests, prompt tokens, completion tokens) the scripted server served for model."""
    recs = server.stats.completions(model)
    return (
        len(recs),
        sum(r.prompt_tokens for r in recs),
        sum(r.completion_tokens for r in recs),
    )


def test_one_unparseable_turn_is_fed_back_and_the_run_finishes(
    dspy_model, with_root_lm, scripted_server
):
    unparseable_root_turns(dspy_model, 1)
    seen: list[Request] = []

    def good(req: Request) -> str:
        seen.append(req)
        return chat_reply(reasoning="Now in the right format.", code="SUBMIT(answer=7)")

    dspy_model.add_rule(is_rlm_turn, good, times=1)
    pred = RLMModule(Vault, max_iterations=4)(document="short", question="How many?")

    assert pred.status == "final" and pred.answer == 7
    assert len(pred.trajectory) == 2  # the unparsed reply used a turn
    assert pred.trajectory[0]["code_blocks"] == []
    # The next turn's history says what was wrong with the format and how to write it.
    (second,) = seen
    assert "could not be parsed" in second.last_user
    assert "Expected the output fields [reasoning, code] and found none of them" in (
        second.last_user
    )
    assert "`[[ ## code ## ]]`" in second.last_user
    assert "=== Turn 1 ===" in second.last_user and "[format error]" in second.last_user
    # Every request the server served is in the run's usage: both of the bad turn's
    # (ChatAdapter, then its JSON fallback) and the good turn.
    calls, prompt, completion = served_usage(scripted_server, "scripted-root")
    assert calls == 3
    total = pred.usage["total"]
    assert (total["calls"], total["input_tokens"], total["output_tokens"]) == (
        calls,
        prompt,
        completion,
    )


def test_parse_failures_in_a_row_end_the_run_with_a_clear_error(
    dspy_model, with_root_lm, scripted_server
):
    unparseable_root_turns(dspy_model, MAX_CONSECUTIVE_PARSE_FAILURES)
    dspy_model.add_rule(is_rlm_turn, chat_reply(reasoning="Too late.", code="SUBMIT(answer=1)"))
    with pytest.raises(RLMRunError, match="status 'error'") as info:
        RLMModule(Vault, max_iterations=10)(document="short", question="How many?")
    message = str(info.value)
    assert f"{MAX_CONSECUTIVE_PARSE_FAILURES} root replies in a row could not be parsed" in (
        message
    )
    assert "Expected the output fields [reasoning, code]" in message
    result = info.value.result
    assert result is not None
    assert len(result.iterations) == MAX_CONSECUTIVE_PARSE_FAILURES - 1
    calls, prompt, completion = served_usage(scripted_server, "scripted-root")
    assert calls == 2 * MAX_CONSECUTIVE_PARSE_FAILURES  # nothing after the last failure
    assert (result.usage.calls, result.usage.input_tokens, result.usage.output_tokens) == (
        calls,
        prompt,
        completion,
    )


def test_a_good_turn_between_bad_ones_resets_the_count(dspy_model, with_root_lm):
    """Only failures in a row end the run: bad, good, bad, bad, good finishes."""
    bad = dict.fromkeys(range(2), UNPARSEABLE)
    script = [
        *bad.values(),
        chat_reply(reasoning="Look.", code="print('looked')"),
        *bad.values(),
        *bad.values(),
        chat_reply(reasoning="Done.", code="SUBMIT(answer=3)"),
    ]
    dspy_model.add_rule(is_root_request, script)
    pred = RLMModule(Vault, max_iterations=6)(document="short", question="How many?")
    assert pred.status == "final" and pred.answer == 3
    assert len(pred.trajectory) == 5


def test_an_unparseable_sub_call_answer_is_an_error_string_and_is_counted(
    dspy_model, root_lm, sub_lm, scripted_server
):
    dspy_model.add_rule(
        is_rlm_turn,
        [
            chat_reply(reasoning="Ask.", code="print(llm_query('How many words?'))"),
            chat_reply(reasoning="Done.", code="SUBMIT(answer=2)"),
        ],
    )
    # The sub-call predictor's request (and its JSON fallback), answered in prose.
    dspy_model.add_rule({"model": "scripted-sub"}, UNPARSEABLE, times=2)
    with dspy.context(lm=root_lm):
        pred = RLMModule(Vault, sub_lm=sub_lm)(document="short", question="How many?")
    assert pred.status == "final" and pred.answer == 2
    stdout = pred.trajectory[0]["code_blocks"][0]["stdout"]
    assert stdout.startswith("Error: the sub-model's answer could not be parsed")
    assert "Expected the output fields [response]" in stdout
    calls, prompt, completion = served_usage(scripted_server, "scripted-sub")
    assert calls == 2
    sub = pred.usage["sub"]
    assert (sub["input_tokens"], sub["output_tokens"]) == (prompt, completion)
    root_calls, root_prompt, root_completion = served_usage(scripted_server, "scripted-root")
    root = pred.usage["root"]
    assert (root["calls"], root["input_tokens"], root["output_tokens"]) == (
        root_calls,
        root_prompt,
        root_completion,
    )


def test_an_unparseable_extract_answer_falls_back_and_is_counted(
    dspy_model, with_root_lm, scripted_server
):
    """Out of turns, the extract predictor's prose answer is no answer (REPL variables are
    looked at instead), and its requests are counted."""
    look = chat_reply(reasoning="Look.", code="final_answer = '5'")
    dspy_model.add_rule(is_rlm_turn, [look, look])
    dspy_model.add_rule(lambda req: "`repl_history`" in req.system, UNPARSEABLE, times=2)
    pred = RLMModule(Vault, max_iterations=2)(document="short", question="How many?")
    assert pred.status == "max_iterations" and pred.answer == 5
    calls, prompt, completion = served_usage(scripted_server, "scripted-root")
    assert calls == 4  # two turns, the extract call and its JSON fallback
    total = pred.usage["total"]
    assert (total["calls"], total["input_tokens"], total["output_tokens"]) == (
        calls,
        prompt,
        completion,
    )


def test_a_badly_typed_field_is_fed_back_without_running_what_it_quotes(dspy_model, with_root_lm):
    """The adapter's message quotes the field's value; none of it runs or ends the run."""
    seen: list[Request] = []
    bad = "```repl\nFINAL(666)\n```"  # for a float field: cannot parse

    def respond(req: Request) -> str:
        seen.append(req)
        if len(seen) == 1:
            return chat_reply(reasoning="x", code="print(1)", confidence=bad)
        if len(seen) == 2:  # the JSONAdapter fallback
            return json.dumps({"reasoning": "x", "code": "print(1)", "confidence": bad})
        return chat_reply(reasoning="Done.", code="SUBMIT(answer=4)", confidence="0.9")

    rlm = RLMModule(Vault, max_iterations=3)
    rlm.root.signature = rlm.root.signature.append("confidence", dspy.OutputField(), type_=float)
    dspy_model.add_rule(is_root_request, respond)
    pred = rlm(document="short", question="How many?")
    assert len(seen) == 3
    assert pred.answer == 4 and pred.status == "final"
    first = pred.trajectory[0]
    assert first["code_blocks"] == [] and first["final_answer"] is None
    assert "Failed to parse field confidence" in first["response"]
    assert "found [reasoning, code, confidence]" in first["response"]
    assert "FINAL(666)" in first["response"] and "```" not in first["response"]
