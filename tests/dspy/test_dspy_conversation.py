"""RLMModule across turns: ``dspy.History`` inputs, and conversations that keep one REPL.

Against the scripted model over real HTTP, in the default (isolated) environment: a
History input reaches the root as a listing and as a REPL list (and survives an optimizer
and save/load); a conversation's second call uses a variable the first made without a new
sub-call (counted at the server); calls of a default module, and of copies of a module
holding a conversation, start fresh.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import cloudpickle
import dspy
import pytest
from dspy_support import chat_reply, is_rlm_turn

from rlm_engine.scripted import Request, ScriptedModel
from rlm_engine.scripted.server import ScriptedServer
from rlm_integrations.dspy import RLMModule

DOC = "\n".join(f"record {i}: value={i * 7}" for i in range(40))


def asked(question: str) -> Callable[[Request], bool]:
    """An RLM root turn of the call whose ``question`` input is ``question`` (its preview;
    the digest of earlier calls in a later call does not match)."""
    return lambda req: is_rlm_turn(req) and f"preview: {question!r}" in req.last_user


def root_codes(model: ScriptedModel, question: str, *codes: str) -> list[Request]:
    """Answer the root turns of the call asking ``question`` with ``codes``, in order."""
    seen: list[Request] = []

    def respond(req: Request) -> str:
        seen.append(req)
        return chat_reply(reasoning="Next step.", code=codes[len(seen) - 1])

    model.add_rule(asked(question), respond, times=len(codes))
    return seen


def sub_calls(server: ScriptedServer) -> int:
    return sum(1 for r in server.stats.log if r.model == "scripted-sub" and r.status == 200)


def first_stdout(pred: dspy.Prediction) -> str:
    return str(pred.trajectory[0]["code_blocks"][0]["stdout"]).strip()


class Chat(dspy.Signature):
    """Answer the user's question in the chat."""

    history: dspy.History = dspy.InputField()
    question: str = dspy.InputField()
    answer: str = dspy.OutputField()


# -- dspy.History inputs ---------------------------------------------------------------------


def test_a_history_input_is_listed_for_the_root_and_a_list_in_the_repl(dspy_model, with_root_lm):
    seen = root_codes(
        dspy_model,
        "And of Germany?",
        "print(type(history).__name__, len(history), history[-1]['answer'])\n"
        "SUBMIT(answer='Berlin')",
    )
    history = dspy.History(
        messages=[
            {"question": "What is the capital of France?", "answer": "Paris"},
            {"question": "And of Italy?", "answer": "Rome"},
        ]
    )
    module = RLMModule(Chat)  # the default, isolated environment: the REPL takes JSON only
    pred = module(history=history, question="And of Germany?")
    assert pred.answer == "Berlin"
    assert first_stdout(pred) == "list 2 Rome"
    info = seen[0].last_user
    assert "`history` (dspy.History: 2 earlier turns of this conversation" in info
    assert "turn 1: question: 'What is the capital of France?'; answer: 'Paris'" in info
    assert "turn 2: question: 'And of Italy?'; answer: 'Rome'" in info


def test_a_history_input_may_be_left_out_on_a_first_turn(dspy_model, with_root_lm):
    seen = root_codes(dspy_model, "Hello?", "print(history)\nSUBMIT(answer='Hi!')")
    pred = RLMModule(Chat)(question="Hello?")
    assert (pred.answer, first_stdout(pred)) == ("Hi!", "[]")
    assert "`history` (dspy.History, no earlier turns" in seen[0].last_user


def test_a_history_input_rejects_other_values_before_any_call(dspy_model, with_root_lm):
    with pytest.raises(TypeError, match="typed dspy.History"):
        RLMModule(Chat)(history="we talked before", question="Hello?")


def _round(n: int) -> dspy.Example:
    history = dspy.History(messages=[{"question": f"Pick a number ({n})", "answer": str(3 * n)}])
    return dspy.Example(history=history, question="Double it.", answer=str(6 * n)).with_inputs(
        "history", "question"
    )


def test_history_inputs_bootstrap_demos_that_save_and_load(dspy_model, root_lm, tmp_path):
    dspy_model.add_rule(
        is_rlm_turn,
        chat_reply(
            reasoning="Double it.", code="SUBMIT(answer=str(2 * int(history[-1]['answer'])))"
        ),
    )

    def metric(gold: Any, pred: Any, trace: Any = None) -> bool:
        return bool(pred.answer == gold.answer)

    with dspy.context(lm=root_lm):
        optimizer = dspy.BootstrapFewShot(metric=metric, max_bootstrapped_demos=2)
        compiled = optimizer.compile(RLMModule(Chat), trainset=[_round(n) for n in (1, 2, 3)])
        demos = compiled.root.demos
        assert len(demos) == 2
        assert "turn 1: question: 'Pick a number (1)'; answer: '3'" in demos[0]["variables_info"]
        assert all("history" not in d for d in demos)  # the root's demos keep its own fields

        path = tmp_path / "chat.json"
        compiled.save(str(path))
        json.loads(path.read_text())
        loaded = RLMModule(Chat)
        loaded.load(str(path))
        assert [dict(d) for d in loaded.root.demos] == [dict(d) for d in demos]
        assert loaded(**_round(7).inputs()).answer == "42"


# -- conversations ----------------------------------------------------------------------------

SUMMARIZE = (
    "chunks = [document[i:i + 300] for i in range(0, len(document), 300)]\n"
    "notes = llm_query_batched([f'Summarize: {c}' for c in chunks])\n"
    "print(len(notes))"
)


@pytest.fixture
def module(sub_lm: dspy.LM, with_root_lm: dspy.LM) -> RLMModule:
    return RLMModule("document, question -> answer", sub_lm=sub_lm)


def test_a_second_call_uses_the_first_calls_variables_without_new_sub_calls(
    module, dspy_model, scripted_server
):
    root_codes(dspy_model, "How many notes?", SUMMARIZE, "SUBMIT(answer=str(len(notes)))")
    second = root_codes(
        dspy_model,
        "What does the first note say?",
        "print(len(history), history[0]['answer'])\nSUBMIT(answer=notes[0])",
    )
    with module.conversation() as chat:
        one = chat(document=DOC, question="How many notes?")
        paid = sub_calls(scripted_server)
        assert one.answer == "3" and paid == 3
        two = chat(document=DOC, question="What does the first note say?")
        assert sub_calls(scripted_server) == paid  # `notes` was still there
        assert two.answer and two.usage["sub"]["calls"] == 0
        assert two.get_lm_usage()["openai/scripted-root"]["prompt_tokens"] > 0  # DSPy saw it
        assert first_stdout(two) == '1 {"answer": "3"}'
        assert chat.turns[0].variables == ["chunks", "notes"]
    info = second[0].last_user
    assert "This call continues a conversation" in info
    assert 'question=\'How many notes?\' -> {"answer": "3"}; variables made: chunks, notes' in info
    with pytest.raises(RuntimeError, match="closed"):
        chat(document=DOC, question="How many notes?")


def test_a_default_module_starts_every_call_fresh(module, dspy_model):
    root_codes(dspy_model, "Remember.", "x = 41\nSUBMIT(answer='ok')")
    root_codes(dspy_model, "Is x there?", "SUBMIT(answer=str('x' in globals()))")
    assert module(document=DOC, question="Remember.").answer == "ok"
    assert module(document=DOC, question="Is x there?").answer == "False"


def test_a_module_holding_a_conversation_and_its_copies(sub_lm, with_root_lm, dspy_model):
    root_codes(dspy_model, "Remember.", "x = 41\nSUBMIT(answer='ok')")
    dspy_model.add_rule(
        asked("Is x there?"),
        chat_reply(reasoning="Look.", code="SUBMIT(answer=str('x' in globals()))"),
    )
    module = RLMModule("document, question -> answer", sub_lm=sub_lm, conversation=True)
    assert module(document=DOC, question="Remember.").answer == "ok"
    # Optimizers deep-copy (and pickle) programs: the copies start conversations of their own.
    assert module.deepcopy()(document=DOC, question="Is x there?").answer == "False"
    assert module.reset_copy()(document=DOC, question="Is x there?").answer == "False"
    copied = cloudpickle.loads(cloudpickle.dumps(module))  # save(save_program=True)'s way
    assert copied(document=DOC, question="Is x there?").answer == "False"
    assert module(document=DOC, question="Is x there?").answer == "True"
    module.reset_conversation()
    assert module(document=DOC, question="Is x there?").answer == "False"
    module.reset_conversation()


def test_a_history_input_named_history_keeps_its_name_in_a_conversation(dspy_model, with_root_lm):
    root_codes(dspy_model, "Pick a number.", "x = 5\nSUBMIT(answer='5')")
    root_codes(
        dspy_model,
        "Double it.",
        "print(len(history), history[0]['answer'], len(rlm_history), x)\nSUBMIT(answer='10')",
    )
    with RLMModule(Chat).conversation() as chat:
        one = chat(question="Pick a number.")
        turns = dspy.History(messages=[{"question": "Pick a number.", "answer": one.answer}])
        two = chat(history=turns, question="Double it.")
    assert first_stdout(two) == "1 5 1 5"


def test_a_conversation_runs_one_call_at_a_time(module, dspy_model, root_lm):
    lm = root_lm
    started, release = threading.Event(), threading.Event()

    def slow(req: Request) -> str:
        started.set()
        release.wait(30)
        return chat_reply(reasoning="Done.", code="SUBMIT(answer='first')")

    dspy_model.add_rule(asked("Slow?"), slow, times=1)
    results: list[Any] = []
    with module.conversation() as chat:

        def call() -> None:
            with dspy.context(lm=lm):  # DSPy settings are per thread
                results.append(chat(document=DOC, question="Slow?"))

        worker = threading.Thread(target=call)
        worker.start()
        assert started.wait(30)
        try:
            with pytest.raises(RuntimeError, match="already running a call"):
                chat(document=DOC, question="Slow?")
        finally:
            release.set()
            worker.join(30)
    assert [r.answer for r in results] == ["first"]


def test_a_cancelled_call_is_abandoned_and_the_conversation_goes_on(module, dspy_model):
    started, release = threading.Event(), threading.Event()

    def slow(req: Request) -> str:
        started.set()
        release.wait(30)
        return chat_reply(reasoning="Too late.", code="SUBMIT(answer='late')")

    dspy_model.add_rule(asked("Slow?"), slow, times=1)
    root_codes(dspy_model, "Remember.", "x = 41\nSUBMIT(answer='ok')")
    root_codes(dspy_model, "Is x there?", "SUBMIT(answer=str(x))")

    async def scenario() -> str:
        async with module.conversation() as chat:
            await chat.acall(document=DOC, question="Remember.")
            call = asyncio.ensure_future(chat.acall(document=DOC, question="Slow?"))
            await asyncio.to_thread(started.wait, 30)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            release.set()
            pred = await chat.acall(document=DOC, question="Is x there?")
            assert len(chat.turns) == 2  # the cancelled call left no turn
            return str(pred.answer)

    try:
        assert asyncio.run(scenario()) == "41"
    finally:
        release.set()
