"""The CodeInterpreter adapter: the protocol itself, then dspy.RLM and ProgramOfThought on it."""

from __future__ import annotations

import json
import re

import dspy
import pytest
from dspy.primitives.code_interpreter import (
    CodeExecutionError,
    CodeInterpreter,
    CodeInterpreterError,
    FinalOutput,
)
from dspy_support import chat_reply, haystack, is_rlm_turn

from rlm_engine.environments import available_environments
from rlm_integrations.dspy.interpreter import EngineInterpreter, EngineInterpreterFactory

ENVIRONMENTS = [e for e in ("local", "subprocess") if e in available_environments()]


@pytest.fixture(params=ENVIRONMENTS)
def interp(request):
    it = EngineInterpreter(environment=request.param, execution_timeout=5)
    yield it
    it.shutdown()


def test_it_implements_the_protocol_and_keeps_state(interp):
    assert isinstance(interp, CodeInterpreter)
    assert interp.execute("x = 2\nprint(x * 3)") == "6"
    assert interp.execute("x + 1") == "3"
    assert interp.execute("y = 1") is None


def test_variables_are_injected_on_every_call(interp):
    assert interp.execute("print(len(doc), doc[:3])", variables={"doc": "abcdef"}) == "6 abc"
    assert interp.execute("doc = 'changed'\nprint(doc)", variables={"doc": "x"}) == "changed"
    assert interp.execute("print(doc)", variables={"doc": "again"}) == "again"
    with pytest.raises(CodeInterpreterError, match="invalid"):
        interp.execute("1", variables={"SUBMIT": 1})


def test_local_variables_are_shared_by_reference():
    data = [1, 2, 3]
    with EngineInterpreter(environment="local") as it:  # by reference: only in-process
        it.execute("data.append(4)", variables={"data": data})
    assert data == [1, 2, 3, 4]


def test_tools_sync_async_and_added_after_start(interp):
    async def shout(text: str) -> str:
        return text.upper()

    interp.tools["add"] = lambda a, b=0: a + b
    assert interp.execute("print(add(2, b=5))") == "7"
    interp.tools["shout"] = shout
    assert interp.execute("print(shout('hey'))") == "HEY"
    with pytest.raises(CodeExecutionError, match="boom"):
        interp.tools["fail"] = lambda: (_ for _ in ()).throw(RuntimeError("boom"))
        interp.execute("fail()")


def test_tool_calls_see_the_callers_dspy_settings(interp, root_lm):
    interp.tools["current_lm"] = lambda: dspy.settings.lm.model
    with dspy.context(lm=root_lm):
        assert interp.execute("print(current_lm())") == "openai/scripted-root"


def test_submit_returns_final_output_and_checks_fields(interp):
    interp.output_fields = [{"name": "answer", "type": "int"}, {"name": "note"}]
    result = interp.execute("SUBMIT(answer=4, note='ok')\nprint('not reached')")
    assert result == FinalOutput({"answer": 4, "note": "ok"})
    assert interp.execute("SUBMIT(5, 'positional')") == FinalOutput(
        {"answer": 5, "note": "positional"}
    )
    with pytest.raises(CodeExecutionError, match="SUBMIT needs exactly these fields: answer, note"):
        interp.execute("SUBMIT(answer=4)")
    interp.output_fields = None
    assert interp.execute("SUBMIT([1, 2])") == FinalOutput({"output": [1, 2]})


def test_errors_map_to_dspy_exceptions_and_the_session_survives(interp):
    with pytest.raises(SyntaxError):
        interp.execute("def broken(:")
    interp.execute("kept = 41")
    with pytest.raises(CodeExecutionError, match=r"(?s)before.*ZeroDivisionError"):
        interp.execute("print('before')\n1 / 0")
    interp.execution_timeout = 0.5
    with pytest.raises(CodeExecutionError, match="Timeout"):
        interp.execute("while True:\n    pass")
    interp.execution_timeout = 5
    assert interp.execute("kept + 1") == "42"


def test_shutdown_is_final():
    it = EngineInterpreter()
    it.execute("a = 1")
    it.shutdown()
    it.shutdown()
    with pytest.raises(CodeInterpreterError, match="shut down"):
        it.execute("a")


def test_factory_is_a_valid_interpreter_factory():
    factory = EngineInterpreterFactory("local")
    assert not isinstance(factory, CodeInterpreter)
    assert "local environment" in factory.execution_instructions
    first, second = factory(), factory()
    assert first is not second and isinstance(first, EngineInterpreter)


class Vault(dspy.Signature):
    """Answer the question about the context. Use a map-reduce strategy."""

    context: str = dspy.InputField()
    question: str = dspy.InputField()
    answer: int = dspy.OutputField()


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_dspy_rlm_runs_on_our_environment(environment, root_lm, sub_lm, scripted_server):
    rlm = dspy.RLM(
        Vault,
        max_iters=4,
        sub_lm=sub_lm,
        interpreter_factory=EngineInterpreterFactory(environment),
    )
    with dspy.context(lm=root_lm):
        pred = rlm(
            context=haystack("The access code for vault 17 is 4821."),
            question="What is the access code for vault 17?",
        )
    assert pred.answer == 4821
    assert "llm_query_batched" in pred.trajectory[0]["code"]
    assert "8 chunks; candidates: ['4821']" in pred.trajectory[0]["output"]
    assert scripted_server.stats.by_model["scripted-sub"] == 9
    assert f"{environment} environment" in rlm.generate_action.signature.instructions


def test_dspy_rlm_sub_agents_work_through_the_facade(dspy_model, root_lm):
    turns = iter(
        [
            chat_reply(
                reasoning="Use a sub-agent.",
                code='import dspy\nqa = dspy.Predict("question -> answer")\n'
                'print("agent:", qa(question="What is 2+3?").answer)',
            ),
            chat_reply(reasoning="Done.", code="SUBMIT(answer=5)"),
        ]
    )
    dspy_model.add_rule(is_rlm_turn, lambda req: next(turns), times=2)
    rlm = dspy.RLM(Vault, max_iters=3, interpreter_factory=EngineInterpreterFactory("local"))
    with dspy.context(lm=root_lm):
        pred = rlm(context="short", question="What is 2+3?")
    assert pred.answer == 5
    assert pred.trajectory[0]["output"] == "agent: Scripted answer."


def test_program_of_thought_runs_on_our_environment(dspy_model, root_lm):
    def generate(req) -> str:
        return chat_reply(
            reasoning="Compute it.",
            generated_code='total = sum(range(1, 11))\nSUBMIT({"answer": total})',
        )

    def answer(req) -> str:
        output = re.search(r"\[\[ ## code_output ## \]\]\n(.*?)\n", req.last_user)[1]
        return chat_reply(reasoning="Read the output.", answer=output)

    dspy_model.add_rule(
        lambda r: (
            "[[ ## generated_code ## ]]" in r.system and "final_generated_code" not in r.system
        ),
        generate,
    )
    dspy_model.add_rule(lambda r: "[[ ## code_output ## ]]" in r.last_user, answer)
    pot = dspy.ProgramOfThought(
        "question -> answer", interpreter_factory=EngineInterpreterFactory("local")
    )
    with dspy.context(lm=root_lm):
        pred = pot(question="What is the sum of 1..10?")
    assert pred.answer == '{"output": {"answer": 55}}'


def double(x: int) -> int:
    """Double a number."""
    return 2 * x


def test_code_act_runs_on_our_environment(dspy_model, root_lm):
    def act(req) -> str:
        return chat_reply(generated_code="```python\nprint(double(21))\n```", finished="True")

    def extract(req) -> str:
        output = re.search(r"code_output_0\W+(\d+)", req.last_user)[1]
        return chat_reply(reasoning="The code printed it.", answer=output)

    dspy_model.add_rule(lambda r: "[[ ## finished ## ]]" in r.system, act)
    dspy_model.add_rule(lambda r: "[[ ## trajectory ## ]]" in r.last_user, extract)
    agent = dspy.CodeAct(
        "question -> answer", tools=[double], interpreter_factory=EngineInterpreterFactory()
    )
    with dspy.context(lm=root_lm):
        pred = agent(question="What is double of 21?")
    assert json.loads(pred.trajectory["code_output_0"]) == "42"  # CodeAct JSON-encodes output
    assert pred.answer == "42"
