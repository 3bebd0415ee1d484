"""Windows are facts read from the server (issue 14) and the reply cap fits in them (issue 15).

Against the scripted server imitating vLLM (``max_model_len`` at ``/v1/models``; a prompt
plus ``max_tokens`` past it is a 400) and llama.cpp (``/props`` ``n_ctx`` and chat
template, model ids that are file paths, replies that end at the window), through the
real openai SDK: with the 8,192-token default cap, an 8k server refused every request.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_engine import RLM, RLMLogger
from rlm_engine.clients.local import VLLMClient
from rlm_engine.clients.openai import OpenAIClient
from rlm_engine.config import DEFAULT_MAX_REPLY_TOKENS
from rlm_engine.scripted import ScriptedModel, ScriptedServer
from rlm_engine.windows import cap_too_large, is_context_overflow, window_chars

DOC = "\n".join(f"Line {i}: filler text about nothing in particular." for i in range(400))
DOC += "\nThe secret code is 7341.\n"
QUERY = "What is the secret code?"


def run(
    server: ScriptedServer, tmp_path: Path | None = None, backend: str = "vllm", **options: Any
) -> Any:
    rlm = RLM(
        backend=backend,
        base_url=server.base_url,
        api_key="sk-test",
        environment="local",
        max_retries=0,
        logger=RLMLogger(tmp_path) if tmp_path else None,
        **options,
    )
    return rlm.completion(DOC, query=QUERY)


def told_window(server: ScriptedServer) -> int:
    """The sub-model window (characters) the root's first request states."""
    m = re.search(r"about ([\d,]+) characters at once", server.wire_log[0]["first"])
    assert m, server.wire_log[0]["first"][:300]
    return int(m.group(1).replace(",", ""))


@pytest.fixture
def vllm_8k() -> Iterator[ScriptedServer]:
    with ScriptedServer(ScriptedModel(), flavor="vllm", context_window=8192) as server:
        yield server


def test_vllm_8k_window_default_cap_fits(vllm_8k: ScriptedServer) -> None:
    """The default cap (8,192) equals the window: the client lowers it to the room the
    prompt leaves, so vLLM accepts every request and the run ends with an answer."""
    res = run(vllm_8k, model="scripted-root")
    assert res.status == "final" and "7341" in res.response
    log = vllm_8k.stats.log
    assert [r.fault for r in log if r.fault] == []
    assert all(r.status == 200 for r in log)
    caps = [e["cap"] for e in vllm_8k.wire_log]
    assert caps and all(c < 8192 for c in caps)  # lowered to the room the prompt leaves
    assert vllm_8k.probes == ["/v1/models", "/props"]  # asked once, kept out of stats


def test_plain_openai_backend_learns_the_window_from_the_refusal(vllm_8k: ScriptedServer) -> None:
    """``backend="openai"`` asks nothing, but vLLM's refusal of the cap states the window
    and the prompt's size: the client resends with the room left, and keeps the window."""
    res = run(vllm_8k, backend="openai", model="scripted-root")
    assert res.status == "final" and "7341" in res.response
    faults = [r.fault for r in vllm_8k.stats.log]
    assert faults[:2] == ["max_tokens", None] and faults.count("max_tokens") <= 2
    assert vllm_8k.probes == []


def test_plain_openai_backend_without_a_model_reads_the_window_too(
    vllm_8k: ScriptedServer,
) -> None:
    """The README's local-server path (``RLM_API_URL``, no model: the first listed one)
    lists the server's models anyway; it reads the window there from the start, so no
    request is refused and the root is told the real figure, not 400,000 characters."""
    res = run(vllm_8k, backend="openai")
    assert res.status == "final" and "7341" in res.response
    assert [r.fault for r in vllm_8k.stats.log if r.fault] == []
    assert "/v1/models" in vllm_8k.probes
    assert told_window(vllm_8k) < 20_000


def test_root_is_told_the_sub_models_real_window(vllm_8k: ScriptedServer) -> None:
    client = VLLMClient(
        "scripted-root", vllm_8k.base_url, "sk", max_tokens=DEFAULT_MAX_REPLY_TOKENS
    )
    assert client.context_window == 8192
    assert client.context_chars == window_chars(8192, DEFAULT_MAX_REPLY_TOKENS) < 20_000
    assert client.describe()["context_window"] == 8192
    # What a run tells the root is that figure, not the 400,000 characters once assumed.
    RLM(backend=client, environment="local").completion(DOC, query=QUERY)
    assert told_window(vllm_8k) == client.context_chars


def test_user_window_wins_and_lowers_the_cap() -> None:
    with ScriptedServer(ScriptedModel(), flavor="vllm", context_window=8192) as server:
        client = VLLMClient(
            "scripted-root",
            server.base_url,
            "sk",
            max_tokens=8000,
            context_window=4096,
            system_as_user=False,
        )
        res = client.complete([{"role": "user", "content": "What is 2+2?"}])
        assert res.text and client.context_window == 4096
        assert 3_000 < server.wire_log[0]["cap"] < 4096
        assert server.probes == []  # nothing left to ask: the user said both


def test_refused_cap_is_resent_with_the_room_the_server_names() -> None:
    """A server whose window the client could not read refuses the cap with its numbers;
    the client resends once with the room they leave, and learns the window."""
    with ScriptedServer(ScriptedModel(), flavor="vllm", context_window=2048) as server:
        # A model the listing does not name: its window cannot be read from /v1/models.
        client = VLLMClient("unlisted-model", server.base_url, "sk", max_tokens=8192)
        res = client.complete([{"role": "user", "content": "What is 2+2?"}])
        assert res.text
        assert [r.fault for r in server.stats.log] == ["max_tokens", None]
        assert client.context_window == 2048
        assert client.describe()["window_source"] == "the server's refusal"


def test_cap_refusal_is_not_an_overflow() -> None:
    """vLLM's refusal of the cap names "maximum context length" but the prompt fits:
    compacting the history would not help, so it is not an overflow."""
    cap = ValueError(
        "'max_tokens' or 'max_completion_tokens' is too large: 8192. This model's maximum "
        "context length is 8192 tokens and your request has 808 input tokens (8192 > 8192 - 808)."
    )
    assert cap_too_large(cap) == (8192, 808) and not is_context_overflow(cap)
    over = ValueError(
        "This model's maximum context length is 8192 tokens. However, your messages "
        "resulted in 9000 tokens. Please reduce the length of the messages."
    )
    assert cap_too_large(over) is None and is_context_overflow(over)


def test_llamacpp_gemma_template_gets_the_system_prompt_in_the_first_user_turn(
    tmp_path: Path,
) -> None:
    """llama.cpp reports a chat template without a system role at /props (Gemma 2's): the
    client sends the system prompt (the whole REPL contract) as the first user turn, so
    the template has nothing to drop. The model id is the GGUF file's path, found at
    /v1/models, and the window is /props' n_ctx."""
    gguf = "/models/gemma-2-2b-it-Q4_K_M.gguf"
    with ScriptedServer(
        ScriptedModel(), flavor="llamacpp", context_window=16_384, drops_system=True, models=[gguf]
    ) as server:
        res = run(server, tmp_path, backend="llamacpp")
        assert res.status == "final" and "7341" in res.response
        assert server.dropped_system == 0
        assert {r.model for r in server.stats.completions()} == {gguf}
        assert all(e["cap"] <= 16_384 for e in server.wire_log)
        assert "llm_query" in server.wire_log[0]["first"]  # the contract reached the model


def test_llamacpp_without_the_fix_loses_the_system_prompt() -> None:
    """What the option prevents: sent as a system message, the contract is dropped."""
    with ScriptedServer(ScriptedModel(), flavor="llamacpp", drops_system=True) as server:
        client = OpenAIClient("m", server.base_url, "sk", system_as_user=False)
        client.complete([{"role": "system", "content": "rules"}, {"role": "user", "content": "hi"}])
        assert server.dropped_system == 1


def test_server_without_usage_gets_a_marked_estimate() -> None:
    with ScriptedServer(ScriptedModel(), flavor="llamacpp", report_usage=False) as server:
        res = run(server, backend="llamacpp", model="scripted-root")
        assert res.status == "final" and res.usage.total.input_tokens > 0
        assert all(r.status == 200 for r in server.stats.log)


def test_llamacpp_context_error_is_an_overflow_that_names_the_window() -> None:
    """llama.cpp's own words for a prompt past n_ctx, through the openai SDK."""
    from rlm_engine.windows import window_from_error

    with ScriptedServer(ScriptedModel(), flavor="llamacpp", context_window=64) as server:
        client = OpenAIClient("m", server.base_url, "sk", max_retries=0)
        with pytest.raises(Exception) as info:
            client.complete([{"role": "user", "content": "word " * 500}])
    assert "exceeds the available context size" in str(info.value)
    assert is_context_overflow(info.value) and window_from_error(info.value) == 64


@pytest.mark.parametrize("backend", ["llamacpp", "vllm"])
def test_rlm_run_with_a_local_server_backend(tmp_path: Path, backend: str) -> None:
    """The CLI form: ``rlm run --backend llamacpp --base-url URL`` (no model: the first the
    server lists, here a GGUF path)."""
    import subprocess
    import sys

    doc = tmp_path / "doc.txt"
    doc.write_text(DOC)
    gguf = "/models/qwen2.5-1.5b-instruct-q4_k_m.gguf"
    with ScriptedServer(
        ScriptedModel(), flavor=backend, context_window=8192, models=[gguf]
    ) as server:
        r = subprocess.run(
            [sys.executable, "-m", "rlm_engine.cli", "run", "-c", str(doc), "-q", QUERY,
             "--backend", backend, "--base-url", server.base_url, "--environment", "local"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "7341"
        assert {rec.model for rec in server.stats.completions()} == {gguf}
        assert not [rec.fault for rec in server.stats.log if rec.fault]


def test_anthropic_takes_a_user_window_and_never_sends_it(scripted_server: ScriptedServer) -> None:
    """``backend_kwargs={"context_window": N}`` is the documented way to state a window;
    the Anthropic client forwarded unknown keywords to the Messages API, which refuses
    parameters it does not know (a 400 on every request of a real account)."""
    from rlm_engine.clients.anthropic import AnthropicClient

    client = AnthropicClient(
        "scripted-root", scripted_server.url, "sk-ant", max_tokens=1000, context_window=16_000
    )
    sent = client._kwargs([{"role": "user", "content": "hi"}], None, None)
    assert "context_window" not in sent
    assert client.context_window == 16_000
    assert client.context_chars == window_chars(16_000, 1000)
    assert client.complete([{"role": "user", "content": "What is 2+2?"}]).text
    rlm = RLM(
        backend="anthropic",
        backend_kwargs={"base_url": scripted_server.url, "context_window": 16_000},
        api_key="sk-ant",
        model="scripted-root",
        environment="local",
    )
    assert rlm.completion(DOC, query=QUERY).status == "final"
