"""The engine's input boundary: one text rule, str subclasses as str, nothing-to-do refused,
and a result that says when every sub-call failed.

Runs through the real OpenAI SDK against the scripted server, and in real environments
(tests/env_support.py) where the REPL side matters.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from env_support import require_env

from rlm_engine import RLM, RLMLogger, RLMSession, run
from rlm_engine.config import make_config
from rlm_engine.inputs import EmptyInputError, prepare_input
from rlm_engine.prompts import describe_context, first_user_message
from rlm_engine.resources import RunResources
from rlm_engine.scripted import Fault, ScriptedModel
from rlm_engine.scripted.server import ScriptedServer
from rlm_engine.text import clean_text, clean_value, is_blank

QUESTION = "What is the vault access code?"


class Accessor(str):
    """Like langchain-core's TextAccessor: a str subclass that is also callable."""

    __slots__ = ()

    def __call__(self) -> str:
        return str(self)

    def __str__(self) -> str:  # a subclass may override it; the boundary must not call it
        return "overridden"


def env_kwargs(name: str) -> dict[str, Any]:
    if name == "docker":
        return {"image": os.environ.get("RLM_DOCKER_IMAGE", "rlm-sandbox:test")}
    return {}


def completion_requests(server: ScriptedServer) -> int:
    return sum(1 for r in server.stats.log if r.path.endswith(("/chat/completions", "/messages")))


# -- the text rule --------------------------------------------------------------------------


def test_clean_text_replaces_lone_surrogates_and_joins_pairs() -> None:
    assert clean_text("a\ud800b\udfffc") == "a\ufffdb\ufffdc"
    assert clean_text("x\ud83d\ude00y") == "x\U0001f600y"  # a UTF-16 pair is one character
    assert clean_text("\ud83d") == "\ufffd"
    escaped = b"caf\xe9".decode("utf-8", "surrogateescape")  # how stdin decodes Latin-1
    assert clean_text(escaped) == "caf\ufffd"
    clean_text(escaped).encode("utf-8")  # encodable now


def test_clean_text_returns_clean_text_itself_and_str_subclasses_as_plain_copies() -> None:
    text = "déjà vu ✓ " * 1000
    assert clean_text(text) is text
    out = clean_text(Accessor("doc"))
    assert type(out) is str and out == "doc"


def test_clean_value_walks_containers_and_copies_only_what_changed() -> None:
    clean = {"a": ["x", ("y", 1)], "b": None}
    assert clean_value(clean) is clean
    dirty = {"k\ud800": [Accessor("p"), ("q\udc80", 2)], "n": 3}
    out = clean_value(dirty)
    assert out == {"k\ufffd": ["p", ("q\ufffd", 2)], "n": 3}
    assert type(out["k\ufffd"][0]) is str and isinstance(out["k\ufffd"][1], tuple)
    json.dumps(out, ensure_ascii=False).encode("utf-8")
    loop: list[Any] = ["x"]
    loop.append(loop)
    assert clean_value(loop) is loop


@pytest.mark.parametrize(
    ("value", "blank"),
    [
        (None, True),
        ("", True),
        (" \n\t", True),
        ([], True),
        ({}, True),
        (["", " ", None], True),
        ({"a": "", "b": [None]}, True),
        ("x", False),
        ([0], False),
        (["", "x"], False),
        ({"": "text"}, False),
    ],
)
def test_is_blank(value: Any, blank: bool) -> None:
    assert is_blank(value) is blank


# -- str subclasses ---------------------------------------------------------------------------


def test_describe_context_says_str_for_str_subclasses() -> None:
    info = describe_context(Accessor("some text"))
    assert info["type"] == "str" and info["total_chars"] == 9
    assert "is a str with 9 characters" in first_user_message(info, "q")
    assert describe_context([Accessor("a"), Accessor("b")])["item_type"] == "str"


@pytest.mark.parametrize("name", ["local", "subprocess", "sandbox"])
def test_repl_receives_a_plain_str(
    name: str, scripted_model: ScriptedModel, openai_kwargs: dict
) -> None:
    require_env(name, env_kwargs(name))
    seen: list[str] = []
    scripted_model.add_rule(
        lambda r: r.is_rlm_root and not seen.append(r.first_user),
        "```repl\nFINAL(type(context).__name__ + ':' + context + ':' + "
        "type(context2[0]).__name__)\n```",
    )
    rlm = RLM(
        backend="openai",
        backend_kwargs=openai_kwargs,
        environment=name,
        repl_setup="context2 = [context]",
    )
    res = rlm.completion(Accessor("the document"), QUESTION)
    assert (res.status, res.response) == ("final", "str:the document:str")
    assert "`context` is a str with 12 characters" in seen[0]
    assert res.context_info["type"] == "str"


# -- nothing to work on -----------------------------------------------------------------------

EMPTY = [
    ("", None),
    (None, None),
    (" \n", ""),
    ("", "   "),
    ([], None),
    ({}, None),
    (["", " "], None),
    ({"doc": ""}, "\t"),
]


@pytest.mark.parametrize(("context", "query"), EMPTY)
def test_empty_input_fails_before_any_lm_call(
    context: Any, query: Any, scripted_server: ScriptedServer, openai_kwargs: dict
) -> None:
    rlm = RLM(backend="openai", backend_kwargs=openai_kwargs)
    with pytest.raises(EmptyInputError, match="Nothing to work on") as info:
        rlm.completion(context, query)
    assert isinstance(info.value, ValueError)
    assert completion_requests(scripted_server) == 0


async def test_empty_input_fails_in_acompletion_and_session_open(
    scripted_server: ScriptedServer, openai_kwargs: dict
) -> None:
    rlm = RLM(backend="openai", backend_kwargs=openai_kwargs)
    with pytest.raises(ValueError, match="the context is an empty str and there is no query"):
        await rlm.acompletion("", None)
    # LangGraph and DSPy open sessions directly: the same check holds there.
    config = make_config(None, backend="openai", backend_kwargs=openai_kwargs)
    shared = RunResources(config)
    try:
        with pytest.raises(EmptyInputError):
            await RLMSession.open(config, [], "  ", shared=shared)
    finally:
        await shared.aclose()
    assert completion_requests(scripted_server) == 0


@pytest.mark.parametrize(
    ("context", "query"),
    [("", "What is 2+2?"), ([], "What is 2+2?"), (None, "What is 2+2?"), ("What is 2+2?", None)],
    ids=["direct-question", "empty-list", "no-context", "task-in-context"],
)
def test_a_real_query_or_real_context_is_enough(
    context: Any, query: Any, scripted_server: ScriptedServer, openai_kwargs: dict
) -> None:
    res = RLM(backend="openai", backend_kwargs=openai_kwargs, max_iterations=3).completion(
        context, query
    )
    assert res.status in {"final", "max_iterations"}
    assert completion_requests(scripted_server) >= 1


def test_blank_query_means_the_task_is_in_the_context() -> None:
    context, query = prepare_input("TASK: say hi", "  \n")
    assert (context, query) == ("TASK: say hi", None)


def test_child_rlm_with_nothing_to_work_on_is_an_error_string_not_a_paid_run(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer, openai_kwargs: dict
) -> None:
    scripted_model.add_rule(
        lambda r: r.is_rlm_root, "```repl\nx = rlm_query('', context='')\n```\nFINAL_VAR(x)"
    )
    res = RLM(backend="openai", backend_kwargs=openai_kwargs, max_depth=2).completion("doc", "q")
    assert res.status == "final"
    assert "could not start a child RLM" in (res.response or "")
    assert "Nothing to work on" in (res.response or "")
    assert completion_requests(scripted_server) == 1  # the root's one turn


# -- lone surrogates end to end ---------------------------------------------------------------

DIRTY_DOC = ("Filler line about nothing.\ud800\n" * 400) + "The vault access code is 4242.\n"


@pytest.mark.parametrize("name", ["local", "subprocess"])
def test_lone_surrogates_in_context_and_query_crash_nothing(
    name: str, tmp_path: Path, scripted_server: ScriptedServer, openai_kwargs: dict
) -> None:
    logger = RLMLogger(tmp_path)
    rlm = RLM(backend="openai", backend_kwargs=openai_kwargs, environment=name, logger=logger)
    res = rlm.completion(DIRTY_DOC, QUESTION + "\udcff")
    assert (res.status, res.response) == ("final", "4242")
    calls = [c for it in res.iterations for c in it.subcalls]
    assert calls and all(c.error is None for c in calls)
    assert res.warnings == []
    assert res.query == QUESTION + "\ufffd"
    assert logger.last_path is not None
    lines = logger.last_path.read_bytes().decode("utf-8").splitlines()  # strict: valid UTF-8
    assert json.loads(lines[-1])["status"] == "final"


def test_surrogates_made_by_repl_code_reach_no_model_or_log(
    tmp_path: Path,
    scripted_model: ScriptedModel,
    scripted_server: ScriptedServer,
    openai_kwargs: dict,
) -> None:
    scripted_model.add_rule(
        lambda r: r.is_rlm_root,
        [
            "```repl\nprint('odd' + chr(0xD800))\nx = llm_query('What is 2+2?' + chr(0xDC80))\n```",
            "```repl\nFINAL('done' + chr(0xDFFF))\n```",
        ],
    )
    logger = RLMLogger(tmp_path)
    res = RLM(backend="openai", backend_kwargs=openai_kwargs, logger=logger).completion("doc", "q")
    assert (res.status, res.response) == ("final", "done\ufffd")
    assert "odd\ufffd" in res.iterations[0].feedback
    (call,) = res.iterations[0].subcalls
    assert call.error is None and call.prompt == "What is 2+2?\ufffd"
    assert logger.last_path is not None
    logger.last_path.read_bytes().decode("utf-8")


# -- every sub-call failed ----------------------------------------------------------------------

BATCH_THEN_FINISH = [
    "```repl\nout = llm_query_batched(['What is 1+1?', 'What is 2+2?'])\nprint(out)\n```",
    "FINAL(I could not read anything)",
]


@pytest.fixture
def failing_subs(
    scripted_server: ScriptedServer, openai_kwargs: dict, sub_kwargs: dict
) -> Callable[..., dict[str, Any]]:
    """``failing_subs(match)``: RLM options whose sub-model requests matching ``match``
    fail (HTTP 500, no retry)."""

    def options(match: Any = "scripted-sub") -> dict[str, Any]:
        scripted_server.inject(Fault(status=500, times=None, match=match))
        return {
            "backend": "openai",
            "backend_kwargs": openai_kwargs,
            "sub_backend_kwargs": {**sub_kwargs, "max_retries": 0},
        }

    return options


def test_final_run_whose_every_subcall_failed_says_so(
    tmp_path: Path, scripted_model: ScriptedModel, failing_subs: Callable[..., dict[str, Any]]
) -> None:
    scripted_model.add_rule(lambda r: r.is_rlm_root, BATCH_THEN_FINISH)
    logger = RLMLogger(tmp_path)
    options = failing_subs()
    res = RLM(**options, logger=logger).completion("doc", "q")
    assert res.status == "final" and res.error is None
    (warning,) = res.warnings
    assert warning.startswith("All 2 sub-calls of this run failed") and "500" in warning
    assert res.to_dict()["warnings"] == [warning]
    assert logger.last_path is not None
    last = json.loads(logger.last_path.read_text(encoding="utf-8").splitlines()[-1])
    assert last["type"] == "result" and last["warnings"] == [warning]


def test_no_warning_when_some_subcalls_succeed(
    scripted_model: ScriptedModel, failing_subs: Callable[..., dict[str, Any]]
) -> None:
    scripted_model.add_rule(lambda r: r.is_rlm_root, BATCH_THEN_FINISH)
    options = failing_subs(match=lambda r: r.model == "scripted-sub" and "2+2" in r.last_user)
    res = RLM(**options).completion("doc", "q")
    assert res.status == "final" and res.warnings == []


def test_child_whose_subcalls_all_failed_counts_as_a_failed_call(
    scripted_model: ScriptedModel, failing_subs: Callable[..., dict[str, Any]]
) -> None:
    scripted_model.add_rule(
        lambda r: r.is_rlm_root and "Query: go" in r.first_user,
        ["```repl\nx = rlm_query('sum it', context='1 2 3')\n```", "FINAL_VAR(x)"],
    )
    scripted_model.add_rule(
        lambda r: r.is_rlm_root,
        ["```repl\ny = llm_query('What is 1+1?')\n```", "FINAL(child gave up)"],
    )
    # The child's root runs on the sub model too: fail only the child's llm_query.
    options = failing_subs(match=lambda r: r.model == "scripted-sub" and not r.is_rlm_root)
    res = RLM(**options, max_depth=2).completion("doc", "go")
    assert res.status == "final" and res.response == "child gave up"
    (child_call,) = res.iterations[0].subcalls
    assert child_call.error is not None and "All 1 sub-calls" in child_call.error
    assert res.warnings and res.warnings[0].startswith("All 1 sub-calls of this run failed")


async def test_session_run_reports_warnings_too(
    scripted_model: ScriptedModel, failing_subs: Callable[..., dict[str, Any]]
) -> None:
    scripted_model.add_rule(lambda r: r.is_rlm_root, BATCH_THEN_FINISH)
    config = make_config(None, **failing_subs())
    shared = RunResources(config)
    try:
        session = await RLMSession.open(config, "doc", "q", shared=shared)
        try:
            res = await run(session)
        finally:
            await session.close()
    finally:
        await shared.aclose()
    assert res.status == "final" and len(res.warnings) == 1
