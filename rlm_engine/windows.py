"""What fits in a model's window: known window sizes, prompt size estimates, and the
errors providers answer with when a prompt does not fit.

The root history grows with every iteration; compaction (``rlm_engine.compaction``)
needs to know, before a call, whether the prompt will fit, and after a failed call,
whether it failed because it did not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rlm_engine.types import Message

#: Input windows in tokens, by model-name prefix (the longest matching prefix wins).
#: Providers publish these; a model not listed falls back to the client's own estimate.
KNOWN_WINDOWS: dict[str, int] = {
    "gpt-5": 272_000,  # input tokens of the 400k window (128k are reserved for output)
    "gpt-4.1": 1_047_576,
    "gpt-4o": 128_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "claude-opus-4": 200_000,
    "claude-sonnet-4": 200_000,
    "claude-haiku-4": 200_000,
    "claude-3-5": 200_000,
    "claude-3-7": 200_000,
    "gemini-2.5": 1_048_576,
    "gemini-2.0": 1_048_576,
    "gemini-3": 1_048_576,
    "gemini-1.5-pro": 2_097_152,
    "gemini-1.5-flash": 1_048_576,
    "o1": 200_000,
    "deepseek-chat": 65_536,  # DeepSeek's API (V3)
    "deepseek-reasoner": 65_536,
}
#: Characters per token of the estimate used when no tokenizer is installed: English
#: prose and code average 3.5-4.5 with the OpenAI and Anthropic tokenizers; the low end
#: keeps the estimate on the safe side.
CHARS_PER_TOKEN = 3.5
#: Tokens a chat format adds per message (role markers and separators).
TOKENS_PER_MESSAGE = 4

# How providers say a prompt does not fit: OpenAI ("context_length_exceeded", "maximum
# context length is N tokens"), Anthropic ("prompt is too long: N tokens > M maximum"),
# vLLM ("This model's maximum context length is N tokens"), llama.cpp ("the request exceeds
# the available context size", "exceed_context_size_error"), LiteLLM
# (ContextWindowExceededError), Ollama ("input length exceeds the context length"), Gemini
# ("The input token count (N) exceeds the maximum number of tokens allowed (M).").
_OVERFLOW = re.compile(
    r"context_length_exceeded|maximum context length|prompt is too long|"
    r"exceeds? (the )?(available )?context|context window|exceed_context_size|"
    r"input length exceeds|too many tokens|reduce the length of the messages|"
    r"ContextWindowExceeded|exceeds the maximum number of tokens allowed",
    re.IGNORECASE,
)


def known_window(model: str | None) -> int | None:
    """The input window of ``model`` in tokens, if it is a known model."""
    if not model:
        return None
    name = model.rsplit("/", 1)[-1].lower()  # "openai/gpt-5-mini", "anthropic/claude-..."
    best: tuple[str, int] | None = None
    for prefix, window in KNOWN_WINDOWS.items():
        if name.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, window)
    return best[1] if best else None


def estimate_tokens(messages: Sequence[Message]) -> int:
    """Tokens of a chat prompt, estimated from its characters (on the high side)."""
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    return int(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)


def is_context_overflow(error: BaseException) -> bool:
    """Whether ``error`` says the prompt did not fit the model's window.

    Checks the error's text, its ``code``/``body`` (the openai and anthropic SDKs' status
    errors carry the provider's JSON body) and its causes. A refused reply cap beside a
    prompt that fits (:func:`cap_too_large`) is not an overflow.
    """
    if cap_too_large(error) is not None:
        return False
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _OVERFLOW.search(_describe(current)):
            return True
        current = current.__cause__ or current.__context__
    return False


_WINDOW_IN_ERROR = re.compile(
    r"maximum context length is (\d[\d,]*)|> ?(\d[\d,]*) maximum|context (?:size|length) "
    r"(?:is |of )?\(?(\d[\d,]*)|[\"']n_ctx[\"']: ?(\d+)|tokens allowed \((\d+)\)",
    re.IGNORECASE,
)


def window_from_error(error: BaseException) -> int | None:
    """The window a context-length error states, in tokens (OpenAI, Anthropic, vLLM and
    llama.cpp say it), else None."""
    m = _WINDOW_IN_ERROR.search(_describe(error))
    if not m:
        return None
    number = next(g for g in m.groups() if g)
    return int(number.replace(",", ""))


# vLLM refuses a reply cap that does not fit beside the prompt: "'max_tokens' or
# 'max_completion_tokens' is too large: 8192. This model's maximum context length is 8192
# tokens and your request has 808 input tokens (8192 > 8192 - 808)"; older versions: "...
# However, you requested 9000 tokens (808 in the messages, 8192 in the completion)".
_CAP_IN_ERROR = re.compile(
    r"maximum context length is (\d[\d,]*) tokens.{0,80}?"
    r"(?:your request has (\d[\d,]*) input tokens|\((\d[\d,]*) in the messages)",
    re.IGNORECASE | re.DOTALL,
)


def cap_too_large(error: BaseException) -> tuple[int, int] | None:
    """``(window, prompt_tokens)`` when ``error`` refused the reply cap, not the prompt: the
    prompt fits (``prompt_tokens < window``) and a lower cap would be accepted, else None.

    Such a refusal is not an overflow: compacting the history would not help, lowering the
    cap to ``window - prompt_tokens`` does.
    """
    m = _CAP_IN_ERROR.search(_describe(error))
    if not m:
        return None
    window = int(m.group(1).replace(",", ""))
    prompt = int((m.group(2) or m.group(3)).replace(",", ""))
    return (window, prompt) if prompt < window else None


#: The fewest tokens a reply is left when the estimated prompt nearly fills the window: the
#: estimate errs high, so the server (which counts exactly) decides whether the prompt fits.
MIN_REPLY_ROOM = 256


def reply_room(window: int, messages: Sequence[Message]) -> int:
    """Tokens left for the reply in a window of ``window`` tokens (prompt and reply
    together, as vLLM's ``max_model_len`` and llama.cpp's ``n_ctx`` count) after
    ``messages``, estimated on the high side; at least :data:`MIN_REPLY_ROOM`."""
    return max(MIN_REPLY_ROOM, window - estimate_tokens(messages))


def window_chars(window: int, reply_reserve: int | None) -> int:
    """Characters a sub-call prompt may hold in a window of ``window`` tokens that also
    holds the reply (``reply_reserve`` tokens, at most half the window): what the root is
    told a sub-model reads at once. Estimated at :data:`CHARS_PER_TOKEN`, 90% of it."""
    reserve = min(reply_reserve or 0, window // 2)
    return int((window - reserve) * CHARS_PER_TOKEN * 0.9)


#: Model families whose chat template has no system role (Gemma 1 and 2 raise "System role
#: not supported" or leave the message out): the system prompt must go in the first user
#: turn. By the last part of the model id, lower case.
SYSTEMLESS_MODELS = ("gemma-2", "gemma-1", "gemma-7b", "gemma-2b", "gemma2", "codegemma")


def drops_system(model: str | None, chat_template: str | None = None) -> bool:
    """Whether a server would lose ``model``'s system message: its chat template (llama.cpp
    reports it at ``/props``) never mentions a system role or refuses one, or, with no
    template to read, the model belongs to a family known to have none."""
    if chat_template:
        lowered = chat_template.lower()
        return "system role not supported" in lowered or "system" not in lowered
    name = (model or "").replace("\\", "/").rsplit("/", 1)[-1].lower()
    return name.startswith(SYSTEMLESS_MODELS)


#: Characters per token above which no real text goes (dense prose is ~4.5): a prompt
#: longer than ``window * CERTAINLY_OVER`` characters cannot fit, whatever its tokenizer.
CERTAINLY_OVER = 6.0


def oversized_prompt(prompt: str, model: str | None, function: str) -> str | None:
    """An error text for a sub-call prompt that cannot fit ``model``'s known window, or
    None (unknown models and prompts that may fit are left to the provider)."""
    window = known_window(model)
    if window is None or len(prompt) <= window * CERTAINLY_OVER:
        return None
    fit = int(window * CHARS_PER_TOKEN * 0.9)
    return (
        f"Error: {function} prompt is {len(prompt):,} characters, far past the window of "
        f"{model} ({window:,} tokens); no call was made. Split it: about {fit:,} characters "
        "fit in one call."
    )


def overflow_message(prompt: str, error: BaseException, function: str) -> str:
    """The REPL's error text when a provider refused a sub-call prompt as too long."""
    window = window_from_error(error)
    fit = (
        f"about {int(window * CHARS_PER_TOKEN * 0.9):,} characters fit in one call"
        if window
        else "send a shorter prompt"
    )
    return (
        f"Error: {function} prompt ({len(prompt):,} characters) is longer than the model's "
        f"context window{f' ({window:,} tokens)' if window else ''}. Split it: {fit}."
    )


def _describe(error: BaseException) -> str:
    parts: list[Any] = [type(error).__name__, str(error)]
    for attr in ("code", "body", "message"):
        parts.append(getattr(error, attr, None) or "")
    return " ".join(str(p) for p in parts)


__all__ = [
    "CHARS_PER_TOKEN",
    "KNOWN_WINDOWS",
    "MIN_REPLY_ROOM",
    "SYSTEMLESS_MODELS",
    "cap_too_large",
    "drops_system",
    "reply_room",
    "window_chars",
    "estimate_tokens",
    "is_context_overflow",
    "known_window",
    "overflow_message",
    "oversized_prompt",
    "window_from_error",
]
