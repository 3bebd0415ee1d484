"""A DSPy root turn cut at the reply cap is told so, and its cut code does not run.

Real servers stop a reply at the cap (the client's ``max_tokens`` on the ``dspy.LM``, or
the server's own, llama.cpp's ``n_predict``) and say ``finish_reason: "length"``. DSPy only
logs a warning; its adapter still parses the cut reply, so the half-written code field
would run (a SyntaxError at best, half a computation at worst) and the model would never
learn why. The scripted server cuts replies the same way here.
"""

from __future__ import annotations

import dspy
import pytest
from dspy_support import chat_reply

from rlm_engine.scripted import Request, ScriptedModel
from rlm_engine.scripted.server import ScriptedServer
from rlm_integrations.dspy import RLMModule

CAP = 60

#: Sets a marker, then goes on far past the cap: the cut falls inside the code field.
LONG_CODE = "marker = 'set'\n" + "\n".join(f"x{i} = {i} * 2" for i in range(300))


class Vault(dspy.Signature):
    """Answer the question about the document."""

    document: str = dspy.InputField()
    question: str = dspy.InputField()
    answer: int = dspy.OutputField()


def is_root_request(req: Request) -> bool:
    return "`repl_history`" in req.system and "`iteration`" in req.system


def script(model: ScriptedModel, seen: list[str]) -> None:
    def after(req: Request) -> str:
        seen.append(req.last_user)
        if len(seen) == 1:
            return chat_reply(reasoning="Was it set?", code="print(globals().get('marker'))")
        return chat_reply(reasoning="Done.", code="SUBMIT(answer=7)")

    model.add_rule(is_root_request, [chat_reply(reasoning="Compute.", code=LONG_CODE)])
    model.add_rule(is_root_request, after)


@pytest.mark.parametrize("capped_by", ["client", "server"])
def test_a_cut_root_turn_does_not_run_and_the_model_is_told(
    dspy_model: ScriptedModel, capped_by: str
) -> None:
    seen: list[str] = []
    script(dspy_model, seen)
    with ScriptedServer(dspy_model, max_reply_tokens=CAP if capped_by == "server" else None) as srv:
        extra = {"max_tokens": CAP} if capped_by == "client" else {}
        lm = dspy.LM(
            "openai/scripted-root", api_base=srv.base_url, api_key="x", cache=False, **extra
        )
        with dspy.context(lm=lm, track_usage=True):
            pred = RLMModule(Vault, max_iterations=5)(document="short", question="How many?")
        finishes = [r.finish_reason for r in srv.stats.completions("scripted-root")]
    assert pred.status == "final" and pred.answer == 7
    assert finishes[0] == "length"
    first = pred.trajectory[0]
    assert first["code_blocks"] == []  # the cut code did not run...
    told = seen[0]
    assert f"cut off at the reply cap of {CAP} tokens" in told
    assert "did not run" in told and "shorter steps" in told
    assert "None" in seen[1]  # ...so `marker` was never set


def test_a_cut_sub_call_answer_is_marked(dspy_model: ScriptedModel, scripted_server) -> None:
    dspy_model.add_rule(
        lambda r: "essay" in r.last_user and not is_root_request(r),
        chat_reply(response="word " * 400),
    )
    dspy_model.add_rule(
        is_root_request,
        [
            chat_reply(
                reasoning="Ask.", code="a = llm_query('Write a long essay')\nprint(a[-40:])"
            ),
            chat_reply(reasoning="Done.", code="SUBMIT(answer=1)"),
        ],
    )
    root = dspy.LM(
        "openai/scripted-root", api_base=scripted_server.base_url, api_key="x", cache=False
    )
    sub = dspy.LM(
        "openai/scripted-sub",
        api_base=scripted_server.base_url,
        api_key="x",
        cache=False,
        max_tokens=CAP,
    )
    with dspy.context(lm=root, track_usage=True):
        pred = RLMModule(Vault, max_iterations=4, sub_lm=sub)(document="d", question="q")
    assert pred.status == "final"
    (call,) = [c for b in pred.trajectory[0]["code_blocks"] for c in b["subcalls"]]
    assert call["truncated"]
    assert f"[cut at the reply cap of {CAP} tokens]" in pred.trajectory[0]["feedback"]


def test_a_reply_cut_before_its_code_field_is_a_cut_turn_not_a_format_error(
    dspy_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    """Cut inside the reasoning: the adapter finds no code field (and its JSON fallback,
    cut too, finds nothing); the root is told about the cap, not about the format."""
    seen: list[str] = []
    long_reasoning = "Let me think. " * 200
    dspy_model.add_rule(
        is_root_request, chat_reply(reasoning=long_reasoning, code="x = 1"), times=2
    )

    def after(req: Request) -> str:
        seen.append(req.last_user)
        return chat_reply(reasoning="Short now.", code="SUBMIT(answer=3)")

    dspy_model.add_rule(is_root_request, after)
    lm = dspy.LM(
        "openai/scripted-root",
        api_base=scripted_server.base_url,
        api_key="x",
        cache=False,
        max_tokens=CAP,
    )
    with dspy.context(lm=lm, track_usage=True):
        pred = RLMModule(Vault, max_iterations=4)(document="d", question="q")
    assert pred.status == "final" and pred.answer == 3
    (told,) = seen
    assert f"cut off at the reply cap of {CAP} tokens" in told
    assert "could not be parsed" not in told
