"""RLMModule: typed signatures, REPL variables, SUBMIT validation, fallbacks, save/load."""

from __future__ import annotations

import json

import dspy
import pytest
from dspy_support import chat_reply, haystack, is_rlm_turn

from rlm_engine import RLM
from rlm_engine.scripted import Request, ScriptedModel
from rlm_integrations.dspy import DSPyLMClient, RLMModule, RLMRunError
from rlm_integrations.dspy.outputs import (
    SubmissionError,
    coerce_submission,
    decode_answer,
    encode_answer,
)


class Vault(dspy.Signature):
    """Answer the question about the document. Use a map-reduce strategy."""

    document: str = dspy.InputField(desc="a long text")
    question: str = dspy.InputField()
    answer: int = dspy.OutputField(desc="the number asked for")


def scripted_turns(model: ScriptedModel, *turns: tuple[str, str]) -> list[Request]:
    """Answer the next RLM root turns with (reasoning, code); returns the requests seen."""
    seen: list[Request] = []

    def respond(req: Request) -> str:
        seen.append(req)
        reasoning, code = turns[min(len(seen), len(turns)) - 1]
        return chat_reply(reasoning=reasoning, code=code)

    model.add_rule(is_rlm_turn, respond, times=len(turns))
    return seen


def test_typed_answer_from_a_long_document(with_root_lm):
    text = haystack("The access code for vault 17 is 4821.")
    pred = RLMModule(Vault)(document=text, question="What is the access code for vault 17?")
    assert pred.answer == 4821 and isinstance(pred.answer, int)
    assert pred.status == "final"
    codes = [b["code"] for it in pred.trajectory for b in it["code_blocks"]]
    assert any("llm_query_batched" in c for c in codes)
    assert pred.usage["sub"]["calls"] >= 8  # one sub-call per chunk, plus the aggregate


def test_string_signature_and_multiple_outputs(dspy_model, with_root_lm):
    scripted_turns(dspy_model, ("done", 'SUBMIT(title="Weather log", lines="801")'))
    rlm = RLMModule("document -> title, lines: int")
    pred = rlm(document=haystack("x"))
    assert (pred.title, pred.lines) == ("Weather log", 801)


def test_rejected_submit_goes_back_to_the_root_and_the_run_continues(dspy_model, with_root_lm):
    seen = scripted_turns(
        dspy_model,
        ("I think it is seven.", 'SUBMIT(answer="seven")'),
        ("The answer must be an int.", "SUBMIT(answer=7)"),
    )
    pred = RLMModule(Vault)(document="short", question="How many?")
    assert pred.answer == 7
    assert len(seen) == 2
    assert "SUBMIT rejected: `answer` must be int" in seen[1].last_user
    first_block = pred.trajectory[0]["code_blocks"][0]
    assert "SUBMIT rejected" in first_block["error"]
    assert pred.trajectory[0]["final_answer"] is None


def test_final_and_final_var_are_checked_too(dspy_model, with_root_lm):
    scripted_turns(
        dspy_model,
        ("Try FINAL.", 'FINAL("many")'),
        ("Use a variable.", "n = '12'\nFINAL_VAR('n')"),
    )
    pred = RLMModule(Vault)(document="short", question="How many?")
    assert pred.answer == 12
    assert "`answer` must be int" in pred.trajectory[0]["code_blocks"][0]["error"]


def test_every_input_is_a_repl_variable_and_the_root_sees_only_previews(dspy_model, with_root_lm):
    secret = "The launch phrase is ultramarine-walrus."
    text = haystack(secret)
    seen = scripted_turns(
        dspy_model,
        (
            "Inspect the inputs.",
            "print(type(document).__name__, len(document), type(tags).__name__, len(tags))\n"
            "print(tags[1], question)",
        ),
        ("Submit the count.", "SUBMIT(answer=len(tags))"),
    )
    rlm = RLMModule("document: str, tags: list[str], question: str -> answer: int")
    pred = rlm(document=text, tags=["a", "b", "c"], question="How many tags?")
    assert pred.answer == 3
    info = seen[0].last_user
    assert f"`document` (str, {len(text):,} characters" in info
    assert "`tags` (list, 15 characters, 3 items)" in info
    assert "`question` (str, 14 characters" in info
    assert all(secret not in r.last_user and secret not in r.system for r in seen)
    assert f"str {len(text)} list 3\nb How many tags?" in seen[1].last_user


def test_run_out_of_turns_uses_the_extract_predictor(dspy_model, with_root_lm):
    look = ("Look.", "print('partial count: 5')")
    scripted_turns(dspy_model, look, look)
    pred = RLMModule(Vault, max_iterations=2)(document="short", question="How many?")
    assert pred.status == "max_iterations"
    assert pred.answer == 5
    assert len(pred.trajectory) == 2


def test_root_lm_failure_raises_an_actionable_error(dspy_model, with_root_lm):
    """An LM that never writes the DSPy format: fed back each turn, then a clear error
    (tests/dspy/test_dspy_parse_failures.py covers the turns in between)."""
    dspy_model.add_rule(lambda req: True, "this is not in any DSPy format")
    with pytest.raises(RLMRunError, match="status 'error'") as info:
        RLMModule(Vault, max_iterations=5)(document="short", question="How many?")
    assert info.value.result is not None and info.value.result.status == "error"
    assert "root replies in a row could not be parsed" in str(info.value)
    assert "dspy.configure(adapter=" in str(info.value)  # says what to do


def test_inputs_and_signatures_are_checked():
    with pytest.raises(ValueError, match="clash"):
        RLMModule("llm_query -> answer")
    with pytest.raises(ValueError, match="clash"):
        RLMModule("document -> trajectory")
    with pytest.raises(ValueError, match="missing inputs \\['question'\\]"):
        RLMModule(Vault)(document="x")


def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


def test_user_tools_are_documented_and_callable_from_the_repl(dspy_model, with_root_lm):
    scripted_turns(dspy_model, ("Use the tool.", "SUBMIT(answer=word_count('a b c d'))"))
    rlm = RLMModule(Vault, tools=[word_count])
    assert "- `word_count(text)`: Count the words in a text." in rlm.root.signature.instructions
    pred = rlm(document="short", question="How many?")
    assert pred.answer == 4
    calls = [c["function"] for b in pred.trajectory[0]["code_blocks"] for c in b["subcalls"]]
    assert "word_count" in calls


def test_the_module_exposes_three_optimizable_predictors_and_no_live_objects():
    rlm = RLMModule(Vault)
    assert [name for name, _ in rlm.named_predictors()] == ["root", "sub_query", "extract"]
    assert "`SUBMIT(answer=...)`" in rlm.root.signature.instructions
    assert "Use a map-reduce strategy." in rlm.root.signature.instructions
    copy = rlm.deepcopy()
    assert copy.root is not rlm.root
    assert copy.root.signature.equals(rlm.root.signature)


def test_save_and_load_round_trip(tmp_path):
    rlm = RLMModule(Vault)
    rlm.root.signature = rlm.root.signature.with_instructions("Optimized root text.")
    rlm.sub_query.signature = rlm.sub_query.signature.with_instructions("Optimized sub text.")
    rlm.root.demos = [
        dspy.Example(
            variables_info="v", repl_history="h", iteration="1/20", reasoning="r", code="print(1)"
        )
    ]
    path = tmp_path / "rlm.json"
    rlm.save(str(path))
    loaded = RLMModule(Vault)
    loaded.load(str(path))
    assert loaded.root.signature.instructions == "Optimized root text."
    assert loaded.sub_query.signature.instructions == "Optimized sub text."
    assert loaded.root.demos[0]["code"] == "print(1)"
    assert json.loads(path.read_text())["root"]["signature"]["instructions"] == (
        "Optimized root text."
    )


def test_optimized_instructions_are_used_and_limits_are_added_per_call(dspy_model, with_root_lm):
    seen = scripted_turns(dspy_model, ("done", "SUBMIT(answer=1)"))
    rlm = RLMModule(Vault, max_iterations=7, max_llm_calls=40)
    rlm.root.signature = rlm.root.signature.with_instructions("OPTIMIZED ROOT PROMPT")
    rlm(document="short", question="How many?")
    system = seen[0].system
    assert "OPTIMIZED ROOT PROMPT" in system
    assert "Limits of this run: 7 turns; at most 40 LM calls in total" in system
    assert rlm.root.signature.instructions == "OPTIMIZED ROOT PROMPT"  # not mutated


def test_submission_parsing_rules():
    class Two(dspy.Signature):
        """Two outputs."""

        text: str = dspy.InputField()
        label: str = dspy.OutputField()
        score: float = dspy.OutputField()

    assert coerce_submission(Two, ["a", "0.5"], {}) == {"label": "a", "score": 0.5}
    assert coerce_submission(Two, [{"label": "a", "score": 1}], {}) == {"label": "a", "score": 1.0}
    assert coerce_submission(Two, ['{"label": "b", "score": 2}'], {}) == {
        "label": "b",
        "score": 2.0,
    }
    with pytest.raises(SubmissionError, match="missing \\['score'\\]"):
        coerce_submission(Two, [], {"label": "a"})
    with pytest.raises(SubmissionError, match="unknown \\['extra'\\]"):
        coerce_submission(Two, [], {"label": "a", "score": 1, "extra": 2})
    with pytest.raises(SubmissionError, match="either positional or keyword"):
        coerce_submission(Two, ["a"], {"score": 1})
    with pytest.raises(SubmissionError, match="`score` must be float"):
        coerce_submission(Two, [], {"label": "a", "score": "high"})
    values = {"label": "c", "score": 0.25}
    assert decode_answer(Two, encode_answer(values)) == values
    assert decode_answer(Vault, "42") == {"answer": 42}


def test_depth_two_runs_a_child_rlm_on_the_sub_lm(dspy_model, root_lm, sub_lm, scripted_server):
    scripted_turns(
        dspy_model,
        (
            "Delegate the search to a child RLM.",
            "found = rlm_query('What is the access code for vault 17?', context=document)\n"
            "print(found)",
        ),
        ("Submit it.", "SUBMIT(answer=found)"),
    )
    text = haystack("The access code for vault 17 is 4821.")
    with dspy.context(lm=root_lm):
        pred = RLMModule(Vault, sub_lm=sub_lm, max_depth=2)(document=text, question="Code?")
    assert pred.answer == 4821
    call = pred.trajectory[0]["code_blocks"][0]["subcalls"][0]
    assert call["function"] == "rlm_query" and call["children"]  # the child's own turns
    assert set(pred.usage["by_depth"]) == {"0", "1", "2"}
    # The child's root turns use the engine's prompt on the sub LM, not the DSPy format.
    child_turns = [
        r
        for r in scripted_server.stats.completions("scripted-sub")
        if r.last_user.startswith("The variable `context`")
    ]
    assert child_turns


def test_subprocess_environment_log_dir_and_events(root_lm, tmp_path):
    events: list[str] = []
    rlm = RLMModule(
        Vault,
        environment="subprocess",
        log_dir=str(tmp_path),
        on_event=lambda e: events.append(e["event"]),
    )
    with dspy.context(lm=root_lm):
        pred = rlm(
            document=haystack("The access code for vault 17 is 4821."),
            question="What is the access code for vault 17?",
        )
    assert pred.answer == 4821
    (log,) = tmp_path.glob("*.jsonl")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 4  # metadata, two iterations, result
    assert {"iteration_start", "subcall_end", "final"} <= set(events)


def test_budget_limits_apply(root_lm):
    with dspy.context(lm=root_lm), pytest.raises(RLMRunError, match="status 'budget'"):
        RLMModule(Vault, max_llm_calls=3)(
            document=haystack("The access code for vault 17 is 4821."),
            question="What is the access code for vault 17?",
        )


def test_dspy_lm_client_serves_the_plain_engine(root_lm):
    with dspy.context(track_usage=True), dspy.track_usage() as tracker:
        res = RLM(backend=DSPyLMClient(root_lm)).completion(
            haystack("The access code for vault 17 is 4821."),
            query="What is the access code for vault 17?",
        )
    assert res.status == "final" and "4821" in res.response
    prompt_tokens = sum(e["prompt_tokens"] for e in tracker.usage_data["openai/scripted-root"])
    assert prompt_tokens == res.usage.input_tokens
