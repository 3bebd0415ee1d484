"""Which LM each call goes to (root, sub_lm, dspy.context), usage tracking and async calls."""

from __future__ import annotations

import asyncio

import dspy
from dspy_support import haystack

from rlm_engine.scripted.server import ScriptedServer
from rlm_integrations.dspy import RLMModule


class Vault(dspy.Signature):
    """Answer the question about the document. Use a map-reduce strategy."""

    document: str = dspy.InputField()
    question: str = dspy.InputField()
    answer: str = dspy.OutputField()


QUESTION = "What is the access code for vault 17?"
TEXT = haystack("The access code for vault 17 is 4821.")


def kinds(server: ScriptedServer, model: str) -> set[str]:
    """What the requests to ``model`` were: RLM turns, sub-call prompts or other."""
    out = set()
    for rec in server.stats.completions(model):
        if rec.last_user.startswith("[[ ## variables_info ## ]]"):
            out.add("turn")
        elif rec.last_user.startswith("[[ ## prompt ## ]]"):
            out.add("sub")
        else:
            out.add("other")
    return out


def test_without_sub_lm_everything_uses_the_configured_lm(root_lm, scripted_server):
    with dspy.context(lm=root_lm):
        pred = RLMModule(Vault)(document=TEXT, question=QUESTION)
    assert pred.answer == "4821"
    assert scripted_server.stats.by_model == {"scripted-root": 11}  # 2 turns, 8 chunks, 1 merge
    assert kinds(scripted_server, "scripted-root") == {"turn", "sub"}


def test_sub_lm_takes_the_sub_calls(root_lm, sub_lm, scripted_server):
    with dspy.context(lm=root_lm):
        pred = RLMModule(Vault, sub_lm=sub_lm)(document=TEXT, question=QUESTION)
    assert pred.answer == "4821"
    assert kinds(scripted_server, "scripted-root") == {"turn"}
    assert kinds(scripted_server, "scripted-sub") == {"sub"}
    assert set(pred.usage["by_model"]) == {"openai/scripted-root", "openai/scripted-sub"}


def test_dspy_context_is_read_at_call_time(root_lm, sub_lm, scripted_server):
    rlm = RLMModule(Vault)
    with dspy.context(lm=root_lm):
        rlm(document=TEXT, question=QUESTION)
    first = scripted_server.stats.by_model
    with dspy.context(lm=sub_lm):
        rlm(document=TEXT, question=QUESTION)
    second = scripted_server.stats.by_model
    assert first == {"scripted-root": 11}
    assert second == {"scripted-root": 11, "scripted-sub": 11}


def test_a_predictor_lm_set_by_the_user_wins_for_the_root(root_lm, sub_lm, scripted_server):
    rlm = RLMModule(Vault)
    rlm.root.lm = sub_lm
    with dspy.context(lm=root_lm):
        rlm(document=TEXT, question=QUESTION)
    assert kinds(scripted_server, "scripted-sub") == {"turn"}
    assert kinds(scripted_server, "scripted-root") == {"sub"}


def test_usage_matches_dspy_tracking_and_the_server(root_lm, sub_lm, scripted_server):
    with dspy.context(lm=root_lm, track_usage=True):
        pred = RLMModule(Vault, sub_lm=sub_lm)(document=TEXT, question=QUESTION)
    tracked = pred.get_lm_usage()
    for model in ("scripted-root", "scripted-sub"):
        prompt, completion = scripted_server.stats.tokens(model)
        assert tracked[f"openai/{model}"]["prompt_tokens"] == prompt
        assert tracked[f"openai/{model}"]["completion_tokens"] == completion
        engine = pred.usage["by_model"][f"openai/{model}"]
        assert (engine["input_tokens"], engine["output_tokens"]) == (prompt, completion)
    assert pred.usage["root"]["calls"] == 2
    assert pred.usage["sub"]["calls"] == 9
    assert pred.usage["total"]["calls"] == scripted_server.stats.requests


def test_history_and_trace_see_the_predictor_calls(root_lm):
    rlm = RLMModule(Vault)
    with dspy.context(lm=root_lm, trace=[]):
        rlm(document=TEXT, question=QUESTION)
        trace = dspy.settings.trace
    predictors = [step[0] for step in trace]
    assert predictors.count(rlm.root) == 2
    assert predictors.count(rlm.sub_query) == 9  # sub-calls ran on REPL threads, still traced
    assert len(rlm.history) == 11


async def test_acall_is_native_async_and_runs_concurrently(root_lm, scripted_server):
    rlm = RLMModule(Vault)
    with dspy.context(lm=root_lm):
        preds = await asyncio.gather(
            rlm.acall(document=TEXT, question=QUESTION),
            rlm.acall(
                document=haystack("The access code for vault 9 is 1234."),
                question="What is the access code for vault 9?",
            ),
        )
    assert [p.answer for p in preds] == ["4821", "1234"]
    assert scripted_server.stats.requests == 22
