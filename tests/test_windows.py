"""Window knowledge: known windows by model prefix, the prompt estimate, and the
context-length errors of real providers (their own wording and bodies)."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from rlm_engine.windows import estimate_tokens, is_context_overflow, known_window


def test_known_windows_by_longest_prefix() -> None:
    assert known_window("gpt-5-mini") == 272_000
    assert known_window("gpt-4.1-nano") == 1_047_576
    assert known_window("openai/gpt-4o-2024-08-06") == 128_000  # router prefixes
    assert known_window("claude-sonnet-4-5") == 200_000
    assert known_window("my-local-model") is None
    assert known_window(None) is None


def test_estimate_errs_on_the_high_side_of_a_real_tokenizer_ratio() -> None:
    msgs = [{"role": "user", "content": "word " * 1000}]  # ~1,000 tokens with tiktoken
    assert 1_000 <= estimate_tokens(msgs) <= 1_600


def _status_error(cls: type, status: int, body: dict) -> Exception:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(status, json=body, request=request)
    return cls(str(body), response=response, body=body)


@pytest.mark.parametrize(
    "error",
    [
        _status_error(
            openai.BadRequestError,
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 128000 tokens. "
                    "However, your messages resulted in 130000 tokens.",
                    "type": "invalid_request_error",
                    "code": "context_length_exceeded",
                }
            },
        ),
        _status_error(
            anthropic.BadRequestError,
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 210000 tokens > 200000 maximum",
                },
            },
        ),
        RuntimeError("the request exceeds the available context size, try increasing it"),
        ValueError("exceed_context_size_error"),
    ],
    ids=["openai", "anthropic", "llama.cpp", "llama.cpp-type"],
)
def test_provider_context_length_errors_are_recognized(error: Exception) -> None:
    assert is_context_overflow(error)


def test_a_wrapped_overflow_is_recognized_and_others_are_not() -> None:
    try:
        try:
            raise RuntimeError("prompt is too long: 5 tokens > 4 maximum")
        except RuntimeError as inner:
            raise ConnectionError("retries exhausted") from inner
    except ConnectionError as outer:
        assert is_context_overflow(outer)
    assert not is_context_overflow(RuntimeError("rate limited (429)"))
    assert not is_context_overflow(TimeoutError())
