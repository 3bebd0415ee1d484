"""``mode``: the RLM loop, one direct LM call, or whichever fits (``rlm_engine.direct``).

Through ``RLM.completion`` against the scripted server on the OpenAI and the Anthropic
wire: a small context in mode="auto" is answered by exactly one LM call (counted at the
server), a big one by the loop, forced modes do what they say, the result says which path
ran and why, and a provider's context-length error on the direct call falls back to the
loop (auto) or says what to do (direct).
"""

from __future__ import annotations

from typing import Any

import pytest

from rlm_engine import RLM, RLMLogger
from rlm_engine.config import RLMConfig
from rlm_engine.direct import Route, decide, direct_messages, prompt_chars
from rlm_engine.scripted import ScriptedModel, ScriptedServer
from tests.support.mode_support import (
    BACKENDS,
    QUESTION,
    completions,
    haystack,
    is_direct,
    refused,
    server_tokens,
    teach_direct,
    wire_options,
)


def rlm_for(scripted_server: ScriptedServer, backend: str, **options: Any) -> RLM:
    return RLM(**wire_options(scripted_server, backend), environment="local", **options)


# -- the decision ---------------------------------------------------------------------------
def test_decide_by_mode_and_threshold() -> None:
    assert decide(RLMConfig(), None, 1000).path == "rlm"
    assert decide(RLMConfig(mode="direct"), 10**9, 1000).path == "direct"
    auto = RLMConfig(mode="auto", direct_threshold=0.5)
    small, big = decide(auto, 500, 1000), decide(auto, 501, 1000)
    assert (small.path, small.threshold, big.path) == ("direct", 500, "rlm")
    assert "500" in small.reason and "direct_threshold=0.5" in small.reason
    tokens = RLMConfig(mode="auto", direct_threshold_tokens=10)
    assert decide(tokens, 10, 10**6) == Route("direct", decide(tokens, 10, 10**6).reason, 10, 10)
    assert decide(tokens, 11, 10**6).path == "rlm"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "fast"}, "mode must be one of rlm, direct, auto"),
        ({"direct_threshold": 2000}, "direct_threshold_tokens"),
        ({"direct_threshold_tokens": 0}, "direct_threshold_tokens must be >= 1"),
    ],
)
def test_bad_mode_options_say_what_to_do(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RLMConfig(**options)


def test_direct_prompt_frames_context_then_request() -> None:
    msgs = direct_messages(["doc one", "doc two"], "Which doc?")
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    assert user.index('<document index="2">\ndoc two') < user.index("Request: Which doc?")
    assert "stated in the context" in direct_messages("do X", None)[1]["content"]
    assert '"a": 1' in direct_messages({"a": 1}, "q")[1]["content"]


# -- through RLM.completion, on both wires ------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_answers_a_small_context_with_one_call(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel, backend: str, tmp_path: Any
) -> None:
    seen = teach_direct(scripted_model)
    events: list[dict[str, Any]] = []
    logger = RLMLogger(tmp_path)
    res = rlm_for(
        scripted_server, backend, mode="auto", logger=logger, on_event=events.append
    ).completion(haystack("5150"), QUESTION)
    assert res.status == "final" and res.response == "5150"
    assert res.path == "direct" and "fit under" in res.path_reason
    assert len(completions(scripted_server)) == 1 and len(seen) == 1
    assert res.usage.calls == 1 and res.usage.total_tokens == server_tokens(scripted_server)
    assert res.iterations == [] and res.environment == ""
    assert [m["role"] for m in seen[0].messages] == ["system", "user"]
    assert "The secret code is 5150." in seen[0].last_user
    routes = [e for e in events if e["event"] == "route"]
    assert [(e["path"], e["path_reason"]) for e in routes] == [("direct", res.path_reason)]
    assert [e["event"] for e in events][-1] == "final"
    assert '"path": "direct"' in logger.last_path.read_text()  # the trace says it too


@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_runs_the_loop_on_a_big_context(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel, backend: str
) -> None:
    seen = teach_direct(scripted_model)
    rlm = rlm_for(scripted_server, backend, mode="auto", direct_threshold_tokens=200)
    res = rlm.completion(haystack("5150"), QUESTION)
    assert res.status == "final" and res.response == "5150"
    assert res.path == "rlm" and "exceed 200 (direct_threshold_tokens)" in res.path_reason
    assert seen == [] and len(res.iterations) >= 1 and len(completions(scripted_server)) > 1
    assert res.to_dict()["path_reason"] == res.path_reason


@pytest.mark.parametrize("backend", BACKENDS)
def test_forced_modes(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel, backend: str
) -> None:
    seen = teach_direct(scripted_model)
    small = haystack("77", lines=4)
    rlm = rlm_for(scripted_server, backend, mode="rlm").completion(small, QUESTION)
    assert rlm.path == "rlm" and "mode='rlm'" in rlm.path_reason and seen == []
    assert len(rlm.iterations) >= 1
    scripted_server.stats.reset()
    big = haystack("88", lines=2000)  # far over auto's threshold of this unknown model
    direct = rlm_for(scripted_server, backend, mode="direct").completion(big, QUESTION)
    assert direct.path == "direct" and direct.path_reason.startswith("mode='direct'")
    assert direct.response == "88" and len(completions(scripted_server)) == 1 and len(seen) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_context_length_error_falls_back_to_the_loop(
    scripted_model: ScriptedModel, backend: str
) -> None:
    seen = teach_direct(scripted_model)
    with ScriptedServer(scripted_model, context_window=4_000) as scripted_server:
        rlm = rlm_for(
            scripted_server,
            backend,
            mode="auto",
            direct_threshold_tokens=100_000,  # wrong on purpose: the provider knows better
            root_context_window=8_000,  # what the user believes; the server has 4,000
            backend_kwargs={"context_chars": 8_000},  # sub-call chunks that fit the window
            prompt_caching=False,  # token totals compared exactly below
        )
        res = rlm.completion(haystack("6061", lines=700), QUESTION)  # ~8k tokens
        assert res.status == "final" and res.response == "6061"
        assert res.path == "rlm" and "refused the direct prompt as too long" in res.path_reason
        assert "4,000 tokens" in res.path_reason
        assert len(refused(scripted_server)) == 1 and seen == []  # refused before the model saw it
        assert res.usage.total_tokens == server_tokens(scripted_server)
        assert res.usage.calls == len(completions(scripted_server))


@pytest.mark.parametrize("backend", BACKENDS)
def test_forced_direct_that_does_not_fit_says_what_to_do(
    scripted_model: ScriptedModel, backend: str
) -> None:
    teach_direct(scripted_model)
    with ScriptedServer(scripted_model, context_window=1_000) as scripted_server:
        res = rlm_for(scripted_server, backend, mode="direct").completion(
            haystack(lines=200), QUESTION
        )
    assert res.status == "error" and res.response is None and res.path == "direct"
    assert "does not fit" in (res.error or "") and "mode='auto'" in (res.error or "")


def test_forced_direct_far_past_a_known_window_sends_nothing(
    scripted_server: ScriptedServer,
) -> None:
    rlm = rlm_for(scripted_server, "openai", mode="direct", root_context_window=100)
    res = rlm.completion("x" * 5_000, QUESTION)
    assert res.status == "error" and "no call was made" in (res.error or "")
    assert completions(scripted_server) == [] and res.usage.calls == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_direct_call_honours_budgets_and_reply_cap(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel, backend: str
) -> None:
    scripted_model.add_rule(is_direct, "word " * 400, name="long")
    capped = rlm_for(scripted_server, backend, mode="direct", max_tokens=20).completion(
        "ctx", "Tell all."
    )
    assert capped.status == "final" and len(capped.response or "") <= 20 * 4 + 4
    assert "cut at the reply cap" in capped.warnings[0]
    budget = rlm_for(scripted_server, backend, mode="direct", max_llm_calls=1, max_cost=None)
    assert budget.completion("ctx", "q").status == "final"  # one call is allowed


def test_direct_call_bounded_by_run_timeout(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel
) -> None:
    scripted_model.add_rule(is_direct, "late", latency=5.0)
    res = rlm_for(scripted_server, "openai", mode="direct", run_timeout=0.5).completion("ctx", "q")
    assert res.status == "timeout" and "run_timeout of 0.5" in (res.error or "")
    assert res.duration < 3


@pytest.mark.parametrize(
    ("context", "query"),
    [
        ("abc" * 1000, "q?"),
        (["a" * 50, "b" * 70], None),
        ({"k": [1, "x" * 30]}, "why"),
        (None, "q"),
    ],
)
def test_prompt_size_is_measured_on_the_high_side_without_building_it(
    context: Any, query: str | None
) -> None:
    built = sum(len(m["content"]) for m in direct_messages(context, query))
    assert built <= prompt_chars(context, query) <= built + 200


def test_a_direct_run_is_one_completion_span(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    teach_direct(scripted_model)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    rlm = rlm_for(scripted_server, "openai", mode="auto", tracer_provider=provider)
    res = rlm.completion(haystack("5150"), QUESTION)
    assert res.path == "direct"
    spans = exporter.get_finished_spans()
    # its one LM call is a chat span under it (tests/test_direct_tracing.py)
    assert [s.name for s in spans] == ["chat scripted-root", "invoke_agent rlm"]
    assert spans[1].attributes["rlm.status"] == "final" and spans[1].status.is_ok


def test_auto_uses_the_window_the_client_knows(
    scripted_server: ScriptedServer, scripted_model: ScriptedModel
) -> None:
    # The OpenAI-compatible clients know a window from the server (vLLM, llama.cpp) or
    # from context_window; the Anthropic client takes no such option.
    seen = teach_direct(scripted_model)
    rlm = rlm_for(scripted_server, "openai", mode="auto", backend_kwargs={"context_window": 2_000})
    res = rlm.completion(haystack("5150", lines=200), QUESTION)  # ~2,700 tokens
    assert res.path == "rlm" and "root window of 2,000" in res.path_reason and seen == []
