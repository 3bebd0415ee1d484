"""Prompt caching over real HTTP: the scripted server simulates the providers' caches
(Anthropic: marked prefixes; OpenAI: automatic, 1,024+ tokens in steps of 128) and
reports them in each API's own usage fields; the engine marks the stable prefix, records
cached tokens per call and prices them at the providers' cached rates."""

from __future__ import annotations

import pytest

from rlm_engine import RLM
from rlm_engine.clients.base import compute_cost, price_for
from rlm_engine.scripted import ScriptedModel, ScriptedServer

STEPS = 8


def script(model: ScriptedModel) -> None:
    steps = [f"```repl\nprint('step {i}', 'y' * 3000)\n```" for i in range(STEPS)]
    model.add_rule(lambda r: r.is_rlm_root, [*steps, "FINAL(done)"])


def run(server: ScriptedServer, backend: str, model: str, **options):
    base_url = server.url if backend == "anthropic" else server.base_url
    return RLM(
        backend=backend,
        model=model,
        base_url=base_url,
        api_key="sk-test",
        environment="local",
        max_iterations=STEPS + 2,
        **options,
    ).completion("context " * 2_000, "Go step by step.")


def test_anthropic_runs_read_a_growing_cached_prefix_and_cost_less(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    script(scripted_model)
    res = run(scripted_server, "anthropic", "claude-haiku-4-5")
    assert res.status == "final"
    root = [r for r in res.usage.records if r.role == "root"]
    cached = [r.cached_input_tokens for r in root]
    # Prompts under 1,024 tokens are not cached; from the first write on, every call
    # reads the previous call's prefix, which grows with each iteration.
    first = next(i for i, r in enumerate(root) if r.cache_write_tokens > 0)
    assert cached[: first + 1] == [0] * (first + 1)
    assert all(b > a for a, b in zip(cached[first + 1 :], cached[first + 2 :], strict=False))
    assert cached[-1] > 0
    # The engine's numbers are the server's.
    served = [r for r in scripted_server.stats.log if r.status == 200]
    assert [r.cached_tokens for r in served] == cached
    total = res.usage.total
    assert total.cached_input_tokens == sum(cached) > total.input_tokens // 2
    uncached = compute_cost(price_for("claude-haiku-4-5"), total.input_tokens, total.output_tokens)
    assert total.cost is not None and uncached is not None
    assert total.cost < 0.6 * uncached
    assert res.to_dict()["usage"]["total"]["cached_input_tokens"] == sum(cached)
    # Every call's prompt, read + written + uncached, is what the server counted: a
    # written prefix is never reported larger than the prompt that wrote it.
    assert [r.input_tokens for r in root] == [r.prompt_tokens for r in served]
    assert all(r.cached_tokens + r.cache_write_tokens <= r.prompt_tokens for r in served)


def test_without_prompt_caching_nothing_is_marked_or_read(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    script(scripted_model)
    res = run(scripted_server, "anthropic", "claude-haiku-4-5", prompt_caching=False)
    assert res.status == "final"
    assert res.usage.total.cached_input_tokens == 0
    assert res.usage.total.cache_write_tokens == 0


@pytest.mark.parametrize("model", ["gpt-5-mini"])
def test_openai_automatic_caching_is_recorded_and_priced(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer, model: str
) -> None:
    script(scripted_model)
    res = run(scripted_server, "openai", model)
    assert res.status == "final"
    root = [r for r in res.usage.records if r.role == "root"]
    cached = [r.cached_input_tokens for r in root]
    assert cached[0] == 0 and cached[-1] > 0
    assert all(c % 128 == 0 for c in cached)  # OpenAI caches in steps of 128 tokens
    assert cached == sorted(cached)  # the append-only history keeps the prefix identical
    total = res.usage.total
    uncached = compute_cost(price_for(model), total.input_tokens, total.output_tokens)
    assert total.cost is not None and uncached is not None and total.cost < uncached
