"""The RLM engine end to end, through the real openai/anthropic SDKs and the scripted server."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest

from rlm_engine import RLM, RLMLogger
from rlm_engine.scripted import Fault, Request, ScriptedModel
from rlm_engine.scripted.server import ScriptedServer


def haystack(n_chars: int = 300_000, secret: str = "731904", seed: int = 3) -> str:
    rng = random.Random(seed)
    words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "report",
        "status",
        "metric",
        "budget",
        "vendor",
        "ticket",
    ]
    lines, total = [], 0
    while total < n_chars:
        line = " ".join(rng.choice(words) for _ in range(12)) + "."
        lines.append(line)
        total += len(line) + 1
    lines.insert(len(lines) * 2 // 3, f"The vault access code is {secret}.")
    return "\n".join(lines)


def root_rule(model: ScriptedModel, responses: list[str], *, where: Any = None) -> None:
    """Script the RLM root's responses in order (optionally only where ``where(req)``)."""
    model.add_rule(lambda r: r.is_rlm_root and (where is None or where(r)), responses)


def server_tokens(server: ScriptedServer) -> tuple[int, int, int]:
    log = [
        r
        for r in server.stats.log
        if r.path.endswith(("/chat/completions", "/messages")) and r.status == 200
    ]
    return len(log), sum(r.prompt_tokens for r in log), sum(r.completion_tokens for r in log)


# -- end to end --------------------------------------------------------------------------


def test_needle_openai_backend_usage_matches_server(scripted_server, openai_kwargs, sub_kwargs):
    rlm = RLM(backend="openai", backend_kwargs=openai_kwargs, sub_backend_kwargs=sub_kwargs)
    res = rlm.completion(haystack(), query="What is the vault access code?")
    assert res.status == "final"
    assert res.response == "731904"
    calls, inp, out = server_tokens(scripted_server)
    assert res.usage.total.calls == calls
    assert (res.usage.input_tokens, res.usage.output_tokens) == (inp, out)
    by_model = scripted_server.stats.by_model
    assert res.usage.root.calls == by_model["scripted-root"]
    assert res.usage.sub.calls == by_model["scripted-sub"]
    assert res.usage.by_model()["scripted-sub"].calls == by_model["scripted-sub"]
    assert res.iterations[0].code_blocks[0].subcalls, "the chunks were read by sub-calls"


def test_anthropic_backend(scripted_server):
    kw = {"model_name": "scripted-root", "base_url": scripted_server.url, "api_key": "sk-ant-test"}
    rlm = RLM(backend="anthropic", backend_kwargs=kw)
    res = rlm.completion(haystack(80_000, secret="5521"), query="What is the vault access code?")
    assert (res.status, res.response) == ("final", "5521")
    assert scripted_server.stats.by_path.get("/v1/messages", 0) == res.usage.total.calls


def test_auto_model_picks_first_server_model(scripted_server):
    kw = {"model_name": "auto", "base_url": scripted_server.base_url, "api_key": "x"}
    res = RLM(backend="openai", backend_kwargs=kw).completion(
        haystack(20_000), "What is the vault access code?"
    )
    assert res.status == "final"
    assert set(scripted_server.stats.by_model) == {scripted_server.models[0]}


def test_rlm_api_url_env_is_default_base_url(scripted_server, monkeypatch):
    monkeypatch.setenv("RLM_API_URL", scripted_server.base_url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    res = RLM(backend="openai", backend_kwargs={"model_name": "scripted-root"}).completion(
        haystack(20_000), "What is the vault access code?"
    )
    assert res.response == "731904"


@pytest.mark.parametrize(
    "context",
    [
        ["doc one is about cats.", "The vault access code is 4242.", "doc three."],
        {"a": "nothing here.", "b": "The vault access code is 4242."},
        [{"id": 1, "text": "nothing"}, {"id": 2, "text": "The vault access code is 4242."}],
    ],
    ids=["list-of-str", "dict", "list-of-dicts"],
)
def test_context_types(context, scripted_server, openai_kwargs):
    seen: list[str] = []
    scripted_server.model.add_skill(lambda r: seen.append(r.first_user) if r.is_rlm_root else None)
    res = RLM(backend="openai", backend_kwargs=openai_kwargs).completion(
        context, "What is the vault access code?"
    )
    assert res.response == "4242"
    assert f"is a {type(context).__name__}" in seen[0]
    assert res.context_info["type"] == type(context).__name__


def test_query_inside_context(scripted_server, openai_kwargs):
    doc = "TASK: What is the vault access code?\n" + haystack(30_000, secret="8080")
    res = RLM(backend="openai", backend_kwargs=openai_kwargs).completion(doc)
    assert res.query is None
    assert (res.status, res.response) == ("final", "8080")


def test_root_never_sees_whole_context(scripted_server, openai_kwargs, sub_kwargs):
    doc = haystack(200_000)
    marker = doc[100_000:100_050]
    RLM(backend="openai", backend_kwargs=openai_kwargs, sub_backend_kwargs=sub_kwargs).completion(
        doc, "What is the vault access code?"
    )
    root_prompts = [r for r in scripted_server.stats.log if r.model == "scripted-root"]
    assert root_prompts
    assert all(r.prompt_tokens < 5_000 for r in root_prompts), "root prompt must stay small"
    assert marker not in json.dumps([r.last_user for r in root_prompts])


async def test_async_completion_and_sync_inside_running_loop(scripted_server, openai_kwargs):
    rlm = RLM(backend="openai", backend_kwargs=openai_kwargs)
    res = await rlm.acompletion(haystack(30_000), "What is the vault access code?")
    assert res.response == "731904"
    res2 = rlm.completion(haystack(30_000), "What is the vault access code?")  # loop is running
    assert res2.response == "731904"


# -- REPL contract --------------------------------------------------------------------------


def test_final_var_names_variable_made_in_same_response(
    scripted_model, scripted_server, openai_kwargs
):
    root_rule(
        scripted_model, ["```repl\nresult = str(len(context)) + ' chars'\n```\nFINAL_VAR(result)"]
    )
    res = RLM(backend="openai", backend_kwargs=openai_kwargs).completion("x" * 1234, "How long?")
    assert (res.status, res.response) == ("final", "1234 chars")
    assert len(res.iterations) == 1


def test_final_from_code_and_multiline_final(scripted_model, scripted_server, openai_kwargs):
    root_rule(scripted_model, ["```python\nFINAL(context.upper())\n```"])
    assert (
        RLM(backend="openai", backend_kwargs=openai_kwargs).completion("abc", "?").response == "ABC"
    )
    scripted_model.clear_rules()
    root_rule(scripted_model, ["Answer below.\nFINAL(line one (a)\nline two)"])
    assert RLM(backend="openai", backend_kwargs=openai_kwargs).completion("abc", "?").response == (
        "line one (a)\nline two"
    )


def test_bad_outputs_get_messages_and_loop_goes_on(scripted_model, scripted_server, openai_kwargs):
    root_rule(
        scripted_model,
        [
            "I think the answer is obvious.",  # no code, no final
            "```repl\ndef broken(:\n```",  # syntax error
            "```repl\nx = {}['missing']\n```",  # exception
            "```repl\nvalue = 7\n```\nFINAL_VAR(valu)",  # FINAL_VAR of a missing name
            "```repl\nprint('y' * 500_000)\n```",  # runaway output
            "FINAL_VAR(value)",
        ],
    )
    res = RLM(backend="openai", backend_kwargs=openai_kwargs, max_output_chars=5_000).completion(
        "c", "?"
    )
    assert (res.status, res.response) == ("final", "7")
    fb = [it.feedback for it in res.iterations]
    assert "no ```repl code block" in fb[0]
    assert "SyntaxError" in fb[1]
    assert "KeyError" in fb[2]
    assert "no REPL variable named 'valu'" in fb[3] and "value" in fb[3]
    assert "characters truncated" in fb[4] and len(fb[4]) < 6_000


def test_show_vars_and_state_across_iterations(scripted_model, scripted_server, openai_kwargs):
    root_rule(
        scripted_model,
        ["```repl\ncount = 3\nitems = [1]\n```", "```repl\nSHOW_VARS()\n```", "FINAL(ok)"],
    )
    res = RLM(backend="openai", backend_kwargs=openai_kwargs).completion("c", "?")
    assert (
        "count: int" in res.iterations[1].feedback and "items: list" in res.iterations[1].feedback
    )


# -- recursion -------------------------------------------------------------------------------


def test_depth_two_recursion_exact_usage(
    scripted_model, scripted_server, openai_kwargs, sub_kwargs
):
    """Root RLM -> child RLM (depth 1) -> grandchild RLM (depth 2) -> plain LM (depth 3)."""
    root_rule(
        scripted_model,
        [
            "```repl\nr = rlm_query('LEVEL1: summarise', context=context[:50])\nprint(r)\n```",
            "FINAL_VAR(r)",
        ],
        where=lambda r: r.model == "scripted-root",
    )
    root_rule(
        scripted_model,
        ["```repl\nr2 = rlm_query('LEVEL2 task')\nout = 'L1<' + r2 + '>'\n```\nFINAL_VAR(out)"],
        where=lambda r: "LEVEL1" in r.first_user,
    )
    root_rule(
        scripted_model,
        ["```repl\nleaf = llm_query('leaf question')\nFINAL_VAR('leaf')\n```"],
        where=lambda r: "LEVEL2" in r.first_user,
    )
    scripted_model.add_rule(
        lambda r: not r.is_rlm_root and "leaf question" in r.last_user, "leaf-answer"
    )
    rlm = RLM(
        backend="openai", backend_kwargs=openai_kwargs, sub_backend_kwargs=sub_kwargs, max_depth=3
    )
    res = rlm.completion("some context " * 100, "q")
    assert (res.status, res.response) == ("final", "L1<leaf-answer>"), res.error
    calls, inp, out = server_tokens(scripted_server)
    assert res.usage.total.calls == calls == 5
    assert (res.usage.input_tokens, res.usage.output_tokens) == (inp, out)
    assert {d: t.calls for d, t in res.usage.by_depth().items()} == {0: 2, 1: 1, 2: 1, 3: 1}
    assert res.usage.root.calls == 2 and res.usage.sub.calls == 3
    assert res.usage.sub.total_tokens + res.usage.root.total_tokens == res.usage.total_tokens
    assert (
        res.usage.by_model()["scripted-sub"].calls == scripted_server.stats.by_model["scripted-sub"]
    )
    child_call = res.iterations[0].code_blocks[0].subcalls[0]
    assert child_call.function == "rlm_query" and child_call.children
    grandchild = child_call.children[0]["code_blocks"][0]["subcalls"][0]
    assert grandchild["function"] == "rlm_query" and grandchild["children"]
    assert grandchild["children"][0]["code_blocks"][0]["subcalls"][0]["response"] == "leaf-answer"
    assert child_call.input_tokens + child_call.output_tokens == res.usage.sub.total_tokens


def test_rlm_query_at_depth_limit_is_plain_llm_call(scripted_model, scripted_server, openai_kwargs):
    root_rule(scripted_model, ["```repl\nx = rlm_query('What is 2+3?')\n```\nFINAL_VAR(x)"])
    res = RLM(backend="openai", backend_kwargs=openai_kwargs, max_depth=1).completion("c", "?")
    assert res.response.strip() == "5"
    assert res.usage.total.calls == 2


def test_child_rlms_count_toward_parent_budget(scripted_model, scripted_server, openai_kwargs):
    root_rule(
        scripted_model,
        ["```repl\nout = rlm_query_batched(['A', 'B', 'C'])\nprint(out)\n```", "FINAL_VAR(out)"],
        where=lambda r: "Query: go" in r.first_user,
    )
    root_rule(
        scripted_model,
        ["```repl\nprint(1)\n```"] * 50,
        where=lambda r: "Query: go" not in r.first_user,
    )
    rlm = RLM(backend="openai", backend_kwargs=openai_kwargs, max_depth=2, max_llm_calls=8)
    res = rlm.completion("ctx", "go")
    calls, _, _ = server_tokens(scripted_server)
    assert res.usage.total.calls == calls == 8
    assert res.status == "budget"
    assert {d: t.calls for d, t in res.usage.by_depth().items()} == {0: 1, 1: 7}


# -- budgets ---------------------------------------------------------------------------------


def test_max_iterations_gives_best_partial_answer(scripted_model, scripted_server, openai_kwargs):
    root_rule(scripted_model, ["```repl\nprint('working')\n```"] * 3)
    scripted_model.add_rule(
        lambda r: r.is_rlm_root and "run out of iterations" in r.last_user, "FINAL(best guess)"
    )
    res = RLM(backend="openai", backend_kwargs=openai_kwargs, max_iterations=3).completion("c", "?")
    assert res.status == "max_iterations"
    assert (
        res.response is None and res.partial_answer == "best guess" and res.answer == "best guess"
    )
    assert len(res.iterations) == 3


def test_max_llm_calls_is_exact_with_batched_calls(scripted_model, scripted_server, openai_kwargs):
    root_rule(
        scripted_model,
        [
            "```repl\nanswer = llm_query_batched(['What is 1+1?'] * 10)\n"
            "print(sum(a.startswith('Error') for a in answer))\n```"
        ]
        * 5,
    )
    res = RLM(backend="openai", backend_kwargs=openai_kwargs, max_llm_calls=6).completion("c", "?")
    assert res.status == "budget"
    calls, _, _ = server_tokens(scripted_server)
    assert calls == res.usage.total.calls == 6  # 1 root + 5 sub; the other 5 were refused
    refused = [c for c in res.iterations[0].code_blocks[0].subcalls if c.error]
    assert len(refused) == 5 and all("budget exhausted" in c.response for c in refused)
    assert res.iterations[0].feedback.split("[block 1]\n")[1].startswith("5")
    assert res.partial_answer and "Error" in res.partial_answer  # the `answer` variable


def test_max_tokens(scripted_model, scripted_server, openai_kwargs):
    root_rule(scripted_model, ["```repl\nprint(llm_query('What is 2+2?'))\n```"] * 20)
    res = RLM(backend="openai", backend_kwargs=openai_kwargs, max_total_tokens=3_000).completion("c", "?")
    assert res.status == "budget" and "max_total_tokens" in (res.error or "")
    assert res.usage.total_tokens >= 3_000
    assert len(res.iterations) < 20


def test_max_cost_with_known_prices(scripted_model, scripted_server, openai_kwargs):
    root_rule(scripted_model, ["```repl\nprint(1)\n```"] * 20)
    kw = {**openai_kwargs, "pricing": {"input": 1000.0, "output": 1000.0}}  # $ per 1M tokens
    res = RLM(backend="openai", backend_kwargs=kw, max_cost=1.0).completion("c", "?")
    assert res.status == "budget" and "max_cost" in (res.error or "")
    assert res.usage.cost is not None and res.usage.cost >= 1.0
    expected = (res.usage.input_tokens + res.usage.output_tokens) * 1000.0 / 1e6
    assert res.usage.cost == pytest.approx(expected)


def test_wall_clock_timeout_ends_run(scripted_model, scripted_server, openai_kwargs):
    root_rule(scripted_model, ["```repl\nx = llm_query('What is 1+1?')\nprint(x)\n```"] * 100)
    scripted_server.set_latency(0.3, model="scripted-root")
    res = RLM(backend="openai", backend_kwargs=openai_kwargs, run_timeout=1.0).completion("c", "?")
    assert res.status == "timeout"
    assert res.duration < 5
    assert "timeout" in (res.error or "")


def test_timeout_while_code_runs(scripted_model, scripted_server, openai_kwargs):
    root_rule(scripted_model, ["```repl\nx = 'partial'\nwhile True:\n    pass\n```"])
    res = RLM(backend="openai", backend_kwargs=openai_kwargs, run_timeout=1.0).completion("c", "?")
    assert res.status == "timeout" and res.duration < 6


def test_cell_timeout_is_reported_and_loop_goes_on(scripted_model, scripted_server, openai_kwargs):
    root_rule(scripted_model, ["```repl\nn = 5\nwhile True:\n    pass\n```", "FINAL_VAR(n)"])
    res = RLM(
        backend="openai", backend_kwargs=openai_kwargs, environment_kwargs={"timeout": 0.5}
    ).completion("c", "?")
    assert (res.status, res.response) == ("final", "5")
    assert res.iterations[0].code_blocks[0].timed_out
    assert "exceeded 0.5 s" in res.iterations[0].feedback


# -- failures ------------------------------------------------------------------------------


def test_429_and_5xx_are_retried(scripted_server, openai_kwargs):
    scripted_server.inject(Fault(status=429, times=1, match="scripted-root", retry_after=0))
    scripted_server.inject(Fault(status=503, times=2, match="scripted-sub"))
    res = RLM(
        backend="openai",
        backend_kwargs=openai_kwargs,
        sub_backend_kwargs={**openai_kwargs, "model_name": "scripted-sub"},
    ).completion(haystack(20_000), "What is the vault access code?")
    assert (res.status, res.response) == ("final", "731904")
    statuses = [r.status for r in scripted_server.stats.log]
    assert statuses.count(429) == 1 and statuses.count(503) == 2


def test_malformed_body_is_retried(scripted_server, openai_kwargs):
    scripted_server.inject(Fault(malformed=True, times=1, match="scripted-root"))
    res = RLM(backend="openai", backend_kwargs=openai_kwargs).completion(
        haystack(20_000), "What is the vault access code?"
    )
    assert res.response == "731904"


def test_root_failure_ends_with_error_status(scripted_server, openai_kwargs):
    scripted_server.inject(Fault(status=500, times=None, match="scripted-root"))
    res = RLM(backend="openai", backend_kwargs={**openai_kwargs, "max_retries": 1}).completion(
        "c", "?"
    )
    assert res.status == "error" and res.response is None
    assert "Root LM call failed" in (res.error or "") and "500" in res.error


def test_failed_sub_call_returns_error_string(
    scripted_model, scripted_server, openai_kwargs, sub_kwargs
):
    root_rule(
        scripted_model,
        [
            "```repl\nout = llm_query_batched(['What is 1+1?', 'What is 2+2?', 'What is 3+3?'])\n"
            "print(out)\n```",
            "FINAL_VAR(out)",
        ],
    )
    scripted_server.inject(
        Fault(
            status=500,
            times=None,
            match=lambda r: r.model == "scripted-sub" and "2+2" in r.last_user,
        )
    )
    res = RLM(
        backend="openai",
        backend_kwargs=openai_kwargs,
        sub_backend_kwargs={**sub_kwargs, "max_retries": 0},
    ).completion("c", "?")
    assert res.status == "final"
    out = eval(res.response)  # noqa: S307 - a list repr produced by the test's own script
    assert out[0].strip() == "2" and out[2].strip() == "6"
    assert out[1].startswith("Error: llm_query_batched failed") and "500" in out[1]


def test_connection_drop_is_retried(scripted_server, openai_kwargs):
    scripted_server.inject(Fault(drop_connection=True, times=1, match="scripted-root"))
    res = RLM(backend="openai", backend_kwargs=openai_kwargs).completion(
        haystack(20_000), "What is the vault access code?"
    )
    assert res.response == "731904"


# -- concurrency --------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [4, 16])
def test_batched_concurrency_measured_at_server(
    concurrency, scripted_model, scripted_server, openai_kwargs, sub_kwargs
):
    root_rule(
        scripted_model,
        [
            "```repl\nout = llm_query_batched([f'What is {i}+1?' for i in range(24)])\n```\n"
            "FINAL_VAR(out)"
        ],
    )
    scripted_server.set_latency(0.15, model="scripted-sub")
    res = RLM(
        backend="openai",
        backend_kwargs=openai_kwargs,
        sub_backend_kwargs=sub_kwargs,
        max_concurrency=concurrency,
    ).completion("c", "?")
    answers = eval(res.response)  # noqa: S307
    assert [a.strip() for a in answers] == [str(i + 1) for i in range(24)]  # order preserved
    assert scripted_server.stats.max_in_flight_by_model["scripted-sub"] == concurrency


# -- observability ----------------------------------------------------------------------------


def test_logger_writes_compact_trajectory_without_secrets(
    tmp_path: Path, scripted_server, openai_kwargs, monkeypatch
):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-very-secret-value-123")
    doc = haystack(400_000)
    logger = RLMLogger(tmp_path)
    kw = {**openai_kwargs, "api_key": "sk-live-abcdefghijklmnopqrstuvwxyz"}
    res = RLM(backend="openai", backend_kwargs=kw, logger=logger).completion(
        doc, "What is the vault access code?"
    )
    files = list(tmp_path.glob("*.jsonl"))
    assert len(files) == 1
    lines = [json.loads(x) for x in files[0].read_text().splitlines()]
    assert [x["type"] for x in lines] == ["metadata"] + ["iteration"] * len(res.iterations) + [
        "result"
    ]
    assert (
        lines[-1]["status"] == "final"
        and lines[-1]["usage"]["total"]["calls"] == res.usage.total.calls
    )
    text = files[0].read_text()
    assert "sk-live" not in text and "tok-very-secret" not in text
    assert doc[200_000:200_080] not in text  # no copies of the context
    assert len(text) < 80_000, "log size must not scale with the 400 KB context"
    # No repeated history: the first response appears once.
    assert text.count(json.dumps(res.iterations[0].response)[1:60]) == 1


def test_verbose_prints_iterations(scripted_server, openai_kwargs, capsys):
    RLM(backend="openai", backend_kwargs=openai_kwargs, verbose=True).completion(
        haystack(20_000), "What is the vault access code?"
    )
    err = capsys.readouterr().err
    assert "iteration 1" in err and "REPL output" in err and "llm_query_batched" in err


def test_on_event_stream(scripted_server, openai_kwargs):
    events: list[dict] = []
    RLM(backend="openai", backend_kwargs=openai_kwargs, on_event=events.append).completion(
        haystack(20_000), "What is the vault access code?"
    )
    kinds = [e["event"] for e in events]
    assert kinds[0] == "iteration_start" and kinds[-1] == "final"
    assert {"root_response", "code_start", "code_end", "subcall_end", "iteration_end"} <= set(kinds)


def test_scripted_backend_in_process():
    res = RLM(backend="scripted").completion(
        haystack(50_000, secret="9090"), "What is the vault access code?"
    )
    assert (res.status, res.response) == ("final", "9090")


def test_concurrent_completions_share_nothing(scripted_server, openai_kwargs):
    async def go() -> list[Any]:
        rlm = RLM(backend="openai", backend_kwargs=openai_kwargs)
        return await asyncio.gather(
            *(
                rlm.acompletion(haystack(20_000, secret=str(s)), "What is the vault access code?")
                for s in (111, 222, 333)
            )
        )

    results = asyncio.run(go())
    assert [r.response for r in results] == ["111", "222", "333"]
    assert len({r.run_id for r in results}) == 3


def test_request_helper_sanity():
    req = Request(
        messages=[
            {"role": "system", "content": "llm_query FINAL("},
            {"role": "user", "content": "Query: x"},
        ]
    )
    assert req.is_rlm_root and req.turn == 0


def test_output_limit_applies_to_the_whole_turn(scripted_model, scripted_server, openai_kwargs):
    spam = "```repl\nprint('z' * 30_000)\n```\n"
    root_rule(scripted_model, [spam * 3 + "FINAL_VAR(missing_name)", "FINAL(done)"])
    res = RLM(backend="openai", backend_kwargs=openai_kwargs, max_output_chars=4_000).completion(
        "c", "?"
    )
    feedback = res.iterations[0].feedback
    assert len(feedback) < 4_000 + 600  # outputs capped together, plus the note and the tail
    assert "characters truncated" in feedback
    assert "no REPL variable named 'missing_name'" in feedback  # notes are never cut


@pytest.mark.parametrize("environment", ["local", "subprocess"])
def test_timeout_during_blocking_call_never_hangs(
    environment, scripted_model, scripted_server, openai_kwargs
):
    root_rule(scripted_model, ["```repl\nanswer = 'partial'\nimport time\ntime.sleep(60)\n```"])
    res = RLM(
        backend="openai", backend_kwargs=openai_kwargs, environment=environment, run_timeout=1.5
    ).completion("c", "?")
    assert res.status == "timeout"
    assert res.duration < 12, "the run must end soon after its timeout"
    if environment == "local":
        # The blocked thread cannot be interrupted, but the REPL namespace is still readable.
        assert res.partial_answer == "partial"


async def test_replay_rebuilds_repl_without_paying_again(
    scripted_model, scripted_server, openai_kwargs, sub_kwargs
):
    """A new session from a saved state re-runs the cells; recorded sub-calls are served."""
    from rlm_engine import RLMSession, RLMState, run

    code = (
        "```repl\na = llm_query_batched(['What is 1+1?', 'What is 2+2?'])\n"
        "b = rlm_query_batched(['child one', 'child two'])\nc = llm_query('What is 3+3?')\n```"
    )
    root_rule(scripted_model, [code, "FINAL(done)"], where=lambda r: "Query: q" in r.first_user)
    root_rule(scripted_model, ["FINAL(child answer)"] * 2, where=lambda r: "child" in r.first_user)
    rlm = RLM(
        backend="openai", backend_kwargs=openai_kwargs, sub_backend_kwargs=sub_kwargs, max_depth=2
    )
    session = await rlm.open_session("ctx", "q")
    try:
        await run(session)
        saved = session.state.to_dict()
    finally:
        await session.close()
        await session.shared.aclose()
    served = scripted_server.stats.requests

    fresh = await rlm.open_session("ctx", "q")  # only for its clients and budget
    again = await RLMSession.open(
        rlm.config, "ctx", "q", shared=fresh.shared, state=RLMState.from_dict(saved)
    )
    try:
        await again.replay()
        assert scripted_server.stats.requests == served, "replay must not call the LM"
        found, value = await again.env.get_variable("b")
        assert found and value == "['child answer', 'child answer']"
        assert (await again.env.get_variable("c"))[1].strip() == "6"
    finally:
        await again.close()
        await fresh.close()
        await fresh.shared.aclose()
