"""The local environment and the shared REPL core, driven directly."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rlm_engine.environments import HostFunction, LocalEnvironment


async def _echo(prompt: str, model: str | None = None) -> str:
    await asyncio.sleep(0.05)
    return f"echo:{prompt}"


async def _batched(prompts: list[str], model: str | None = None) -> list[str]:
    return list(await asyncio.gather(*(_echo(p) for p in prompts)))


def _functions() -> dict[str, HostFunction]:
    return {
        "llm_query": HostFunction("llm_query", _echo),
        "llm_query_batched": HostFunction("llm_query_batched", _batched),
    }


async def _env(context: Any = "the context", **kw: Any) -> LocalEnvironment:
    env = LocalEnvironment(**kw)
    await env.start(context, _functions())
    return env


async def test_state_persists_and_last_expression_is_shown() -> None:
    env = await _env()
    r1 = await env.execute("x = len(context)\ny = x * 2")
    assert r1.error is None and r1.stdout == ""
    r2 = await env.execute("y + 1")
    assert r2.stdout.strip() == str(len("the context") * 2 + 1)
    assert await env.list_variables() == {"x": "int", "y": "int"}
    await env.close()


async def test_context_is_not_copied() -> None:
    doc = ["a", "b"]
    env = await _env(doc)
    await env.execute("context.append('c')")
    assert doc == ["a", "b", "c"]
    await env.close()


async def test_host_calls_and_batched_concurrency() -> None:
    env = await _env()
    started = time.perf_counter()
    r = await env.execute(
        "out = llm_query_batched([str(i) for i in range(20)])\nprint(out[3], len(out))"
    )
    elapsed = time.perf_counter() - started
    assert r.stdout.strip() == "echo:3 20"
    assert elapsed < 20 * 0.05  # 20 sequential calls would take 1 s; they ran concurrently
    await env.close()


async def test_final_and_final_var_from_code() -> None:
    env = await _env()
    assert (await env.execute("FINAL('done')")).final == "done"
    assert (await env.execute("ans = 41 + 1\nFINAL_VAR('ans')")).final == "42"
    assert (await env.execute("FINAL_VAR([1, 2])")).final == "[1, 2]"
    missing = await env.execute("FINAL_VAR('nope')")
    assert missing.final is None and "no REPL variable named 'nope'" in (missing.error or "")
    await env.close()


async def test_errors_show_only_user_frames() -> None:
    env = await _env()
    r = await env.execute("def f():\n    return 1 / 0\nf()")
    assert r.error is not None and "ZeroDivisionError" in r.error
    assert "repl_core" not in r.error and "<cell" in r.error
    syntax = await env.execute("def (:")
    assert syntax.error is not None and "SyntaxError" in syntax.error
    exit_ = await env.execute("import sys; sys.exit(3)")
    assert "SystemExit" in (exit_.error or "")
    await env.close()


async def test_timeout_interrupts_and_state_survives() -> None:
    env = await _env(timeout=0.5)
    await env.execute("kept = 'yes'")
    r = await env.execute("i = 0\nwhile True:\n    i += 1")
    assert r.timed_out and "Timeout" in (r.error or "")
    after = await env.execute("print(kept, i > 0)")
    assert after.stdout.strip() == "yes True"
    await env.close()


async def test_output_spam_is_capped() -> None:
    env = await _env(max_output_chars=10_000)
    r = await env.execute("for _ in range(200_000):\n    print('spam' * 10)")
    assert len(r.stdout) < 12_000 and "characters of output dropped" in r.stdout
    await env.close()


async def test_concurrent_cells_keep_outputs_apart() -> None:
    a, b = await _env("A"), await _env("B")
    code = "import time\nfor _ in range(20):\n    print(context, end='')\n    time.sleep(0.005)"
    ra, rb = await asyncio.gather(a.execute(code), b.execute(code))
    assert ra.stdout == "A" * 20 and rb.stdout == "B" * 20
    await a.close()
    await b.close()

