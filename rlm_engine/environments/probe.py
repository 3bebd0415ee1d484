"""Check that an environment really works here by starting it and running one cell.

A real start catches every missing piece at once (bwrap, user namespaces, the Docker
daemon, the image, a usable interpreter) with the error message the user would get.
"""

from __future__ import annotations

from typing import Any

from rlm_engine.environments import make_environment


async def probe(name: str, **environment_kwargs: Any) -> str | None:
    """``None`` when environment ``name`` can run a cell, else the reason it cannot."""
    try:
        env = make_environment(name, environment_kwargs)
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    if hasattr(env, "use_warm_pool"):
        env.use_warm_pool = False  # a probe is not demand: start no workers ahead of time
    try:
        await env.start("probe", {})
        result = await env.execute("print(context)", timeout=60)
        if result.error or result.stdout.strip() != "probe":
            return f"a test cell failed: {result.error or result.stdout!r}"
        return None
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    finally:
        await env.close()
