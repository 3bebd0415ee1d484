"""Per-call time of each provider client against the scripted server on 127.0.0.1.

What a backend costs on top of the model: the SDK's request building, streaming and
parsing. Also the one-time window probe of the vllm/llamacpp backends (two GETs).

    uv run python benchmarks/bench_providers.py [CALLS]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from rlm_engine.clients import make_client
from rlm_engine.clients.server_info import probe
from rlm_engine.scripted import ScriptedModel, ScriptedServer

MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]


async def per_call(client: Any, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        await client.acomplete(MSGS)
        times.append((time.perf_counter() - t) * 1000)
    return times


async def measure(specs: dict[str, tuple[str, dict[str, Any]]], calls: int) -> None:
    for label, (backend, kw) in specs.items():
        client = make_client(backend, kw)
        await per_call(client, 5)  # warm up (and the one-time window probe)
        times = await per_call(client, calls)
        await client.aclose()
        p90 = sorted(times)[int(len(times) * 0.9)]
        print(
            f"{label:9s} median {statistics.median(times):6.2f} ms  p90 {p90:6.2f} ms ({calls} calls)"
        )


def main(calls: int = 200) -> None:
    with ScriptedServer(ScriptedModel(), flavor="llamacpp", context_window=8192) as s:
        specs = {
            "openai": ("openai", {"model_name": "m", "base_url": s.base_url, "api_key": "k"}),
            "llamacpp": ("llamacpp", {"model_name": "m", "base_url": s.base_url}),
            "azure": ("azure", {"model_name": "d", "base_url": s.url, "api_key": "k"}),
            "gemini": (
                "gemini",
                {"model_name": "gemini-2.5-flash", "base_url": s.url, "api_key": "k"},
            ),
            "litellm": (
                "litellm",
                {"model_name": "openai/m", "base_url": s.base_url, "api_key": "k"},
            ),
        }
        asyncio.run(measure(specs, calls))
        t = time.perf_counter()
        for _ in range(50):
            probe(s.base_url, "m")
        ms = (time.perf_counter() - t) / 50 * 1000
        print(f"window probe (GET /v1/models + /props): {ms:.2f} ms, once per client")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
