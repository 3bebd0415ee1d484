"""The third way to finish: ``answer["content"] = ...`` and ``answer["ready"] = True`` in a
REPL block (the paper authors' library since its PR #162), next to FINAL and FINAL_VAR, in
every environment (real ones: tests/env_support.py) and through the engine.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from env_support import Factory, environments, require_env

from rlm_engine import RLM
from rlm_engine.scripted import ScriptedModel

ALL = ["local", "subprocess", "sandbox", "docker"]


def env_kwargs(name: str) -> dict[str, Any]:
    if name == "docker":
        return {"image": os.environ.get("RLM_DOCKER_IMAGE", "rlm-sandbox:test")}
    return {}


@pytest.fixture
async def make_env(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    async with environments(request.param, env_kwargs(request.param)) as factory:
        yield factory


every = pytest.mark.parametrize("make_env", ALL, indirect=True)


@every
async def test_answer_ready_ends_the_cell_with_its_content(make_env: Factory) -> None:
    env = await make_env("ctx")
    r = await env.execute('answer["content"] = "forty-two"\nanswer["ready"] = True')
    assert (r.final, r.error) == ("forty-two", None)
    # ``ready`` is consumed: the next cell is not final by itself.
    assert (await env.execute("print(1)")).final is None
    r = await env.execute('answer = {"content": 42, "ready": True}')  # rebinding works too
    assert r.final == "42"


@every
async def test_answer_holder_is_invisible_until_used(make_env: Factory) -> None:
    env = await make_env("ctx")
    assert await env.list_variables() == {}
    assert await env.get_variable("answer") == (False, "")
    assert (await env.execute("print(answer)")).stdout == "{'content': '', 'ready': False}\n"
    r = await env.execute('answer["content"] = "draft"')
    assert r.final is None
    assert await env.list_variables() == {"answer": "dict"}
    assert await env.get_variable("answer") == (True, "draft")  # a partial answer
    assert (await env.execute("FINAL_VAR('answer')")).final == "draft"


@every
async def test_other_uses_of_the_name_answer_are_untouched(make_env: Factory) -> None:
    env = await make_env("ctx")
    r = await env.execute('answer = "plain text"\nprint(answer)')
    assert (r.final, r.stdout) == (None, "plain text\n")
    assert await env.get_variable("answer") == (True, "plain text")
    r = await env.execute('answer = {"ready": True, "items": [1]}')  # not the convention's shape
    assert r.final is None


@every
async def test_final_wins_and_an_error_after_ready_still_finishes(make_env: Factory) -> None:
    env = await make_env("ctx")
    r = await env.execute('FINAL("from FINAL")\nanswer["content"] = "x"\nanswer["ready"] = True')
    assert r.final == "from FINAL"
    r = await env.execute('answer["content"] = "kept"\nanswer["ready"] = True\n1 / 0')
    assert r.final == "kept" and "ZeroDivisionError" in (r.error or "")


@pytest.mark.parametrize("make_env", ["local", "subprocess"], indirect=True)
async def test_answer_goes_through_the_namespace_final(make_env: Factory) -> None:
    # A setup that checks answers (DSPy's typed outputs wrap FINAL) checks this one too.
    setup = (
        "_plain_final = FINAL\n"
        "def FINAL(value):\n"
        "    if not str(value).isdigit():\n"
        "        raise ValueError(f'not a number: {value!r}')\n"
        "    _plain_final(value)\n"
    )
    env = await make_env("ctx", setup=setup)
    r = await env.execute('answer["content"] = "seven"\nanswer["ready"] = True')
    assert r.final is None and "not a number: 'seven'" in (r.error or "")
    r = await env.execute('answer["content"] = "7"\nanswer["ready"] = True')
    assert (r.final, r.error) == ("7", None)


@pytest.mark.parametrize("name", ALL)
def test_engine_ends_a_run_with_the_answer_dict(
    name: str, scripted_model: ScriptedModel, openai_kwargs: dict
) -> None:
    require_env(name, env_kwargs(name))
    scripted_model.add_rule(
        lambda r: r.is_rlm_root,
        [
            "```repl\nn = len(context)\nprint(n)\n```",
            "Done.\n```repl\nanswer['content'] = f'{n} characters'\nanswer['ready'] = True\n```\n"
            "```repl\nraise SystemError('a block after the answer must not run')\n```",
        ],
    )
    res = RLM(
        backend="openai",
        backend_kwargs=openai_kwargs,
        environment=name,
        environment_kwargs=env_kwargs(name),
    ).completion("x" * 321, query="How long is the context?")
    assert (res.status, res.response) == ("final", "321 characters")
    assert len(res.iterations) == 2 and len(res.iterations[1].code_blocks) == 1


def test_partial_answer_comes_from_the_answer_content(
    scripted_model: ScriptedModel, openai_kwargs: dict
) -> None:
    scripted_model.add_rule(
        lambda r: r.is_rlm_root, ["```repl\nanswer['content'] = 'best so far'\n```"] * 2
    )
    res = RLM(
        backend="openai",
        backend_kwargs=openai_kwargs,
        max_iterations=1,
        final_answer_on_max_iterations=False,
    ).completion("doc", "q")
    assert (res.status, res.partial_answer) == ("max_iterations", "best so far")
