"""``max_errors``: a run whose code keeps raising stops after N consecutive failing turns,
over the real openai SDK and the scripted server, with a clear error and its partial answer."""

from __future__ import annotations

from typing import Any

import pytest

from rlm_engine import RLM
from rlm_engine.scripted import ScriptedModel
from rlm_engine.scripted.server import ScriptedServer

FAIL = "```repl\nanswer = 'partial ' + str(len(context))\nraise KeyError('no_such_key')\n```"
OK = "```repl\nprint(len(context))\n```"


def root_rule(model: ScriptedModel, responses: list[str]) -> None:
    model.add_rule(lambda r: r.is_rlm_root, responses)


def root_calls(server: ScriptedServer) -> int:
    return len([r for r in server.stats.log if r.path.endswith("/chat/completions")])


def test_consecutive_failing_turns_stop_the_run(
    scripted_server: ScriptedServer, openai_kwargs: dict[str, Any]
) -> None:
    root_rule(scripted_server.model, [FAIL] * 10)
    rlm = RLM(backend="openai", backend_kwargs=openai_kwargs, max_errors=3, max_iterations=10)
    res = rlm.completion("abcdef", query="What is it?")
    assert res.status == "error"
    assert len(res.iterations) == 3 and root_calls(scripted_server) == 3
    assert "3 consecutive turns whose code raised" in (res.error or "")
    assert "max_errors=3" in (res.error or "") and "KeyError" in (res.error or "")
    assert res.response is None and res.partial_answer == "partial 6"


def test_a_turn_whose_code_runs_resets_the_count(
    scripted_server: ScriptedServer, openai_kwargs: dict[str, Any]
) -> None:
    root_rule(scripted_server.model, [FAIL, OK, FAIL, OK, FAIL, FAIL, "FINAL(never)"])
    rlm = RLM(backend="openai", backend_kwargs=openai_kwargs, max_errors=2, max_iterations=10)
    res = rlm.completion("abcdef", query="What is it?")
    assert res.status == "error" and len(res.iterations) == 6


def test_off_by_default_the_root_keeps_trying(
    scripted_server: ScriptedServer, openai_kwargs: dict[str, Any]
) -> None:
    root_rule(scripted_server.model, [FAIL] * 4 + ["FINAL(done)"])
    res = RLM(backend="openai", backend_kwargs=openai_kwargs).completion("abc", query="Q?")
    assert res.status == "final" and res.response == "done" and len(res.iterations) == 5


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), ("3", TypeError)])
def test_bad_values_say_what_is_wrong(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_errors"):
        RLM(backend="scripted", max_errors=value)
