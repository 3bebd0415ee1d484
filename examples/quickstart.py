"""Needle in a haystack: find one fact in a generated ~2 MB document with an RLM.

Uses a real model when OPENAI_API_KEY, ANTHROPIC_API_KEY or RLM_API_URL is set, and the
package's offline scripted model otherwise.

    uv run examples/quickstart.py
"""

from __future__ import annotations

import os
import random
import time

from rlm_engine import RLM


def make_haystack(size_chars: int = 2_000_000, seed: int = 7) -> tuple[str, str]:
    """A long log-like document with one hidden fact; returns (document, secret)."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "system", "module", "report", "review", "status", "update", "metric", "quarterly", "budget", "vendor", "shipment", "ticket", "customer", "region", "latency"]
    secret = f"{rng.randint(100000, 999999)}"
    lines: list[str] = []
    total = 0
    while total < size_chars:
        line = f"Entry {len(lines)}: " + " ".join(rng.choice(words) for _ in range(14)) + "."
        lines.append(line)
        total += len(line) + 1
    lines.insert(rng.randrange(len(lines) // 3, len(lines)), f"The vault access code is {secret}.")
    return "\n".join(lines), secret


def pick_backend() -> tuple[str, dict, str]:
    if os.environ.get("RLM_API_URL"):
        return (
            "openai",
            {"model_name": os.environ.get("RLM_MODEL", "auto")},
            "OpenAI-compatible server at RLM_API_URL",
        )
    if os.environ.get("OPENAI_API_KEY"):
        return "openai", {"model_name": os.environ.get("RLM_MODEL", "gpt-5-mini")}, "OpenAI"
    if os.environ.get("ANTHROPIC_API_KEY"):
        return (
            "anthropic",
            {"model_name": os.environ.get("RLM_MODEL", "claude-sonnet-4-5")},
            "Anthropic",
        )
    return "scripted", {}, "the built-in offline scripted model (set OPENAI_API_KEY for a real one)"


def main() -> None:
    document, secret = make_haystack()
    backend, kwargs, label = pick_backend()
    print(f"Backend: {label}")
    print(f"Context: {len(document):,} characters; the root model never sees it directly.")
    rlm = RLM(backend=backend, backend_kwargs=kwargs, max_iterations=10, verbose=False)
    started = time.perf_counter()
    result = rlm.completion(document, query="What is the vault access code?")
    elapsed = time.perf_counter() - started
    u = result.usage
    print(f"Answer: {result.answer}  (status: {result.status}, expected: {secret})")
    print(
        f"Iterations: {len(result.iterations)}, LM calls: {u.total.calls} "
        f"(root {u.root.calls}, sub {u.sub.calls}), tokens: {u.total.total_tokens:,}, "
        f"time: {elapsed:.2f} s"
    )
    if result.status != "final" or secret not in (result.answer or ""):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
