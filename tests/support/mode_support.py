"""Shared by the ``mode`` tests (tests/test_mode*.py and the integrations' ones).

The scripted model has no policy for the engine's direct prompt (it is a plain request,
like any user's), so these tests teach it one with a rule: read the ``<context>`` block
and answer the request from it with the scripted reader, as a model reading the whole
prompt would. The rule also keeps every direct request it saw, for the tests to inspect.
"""

from __future__ import annotations

import re
from typing import Any

from rlm_engine.direct import DIRECT_SYSTEM
from rlm_engine.scripted import Request, ScriptedModel, ScriptedServer
from rlm_engine.scripted.reader import answer_from_text

BACKENDS = ["openai", "anthropic"]
QUESTION = "What is the secret code?"
_DIRECT = re.compile(r"<context>\n(?P<text>.*)\n</context>\n\nRequest: (?P<q>.*)", re.S)


def haystack(code: str = "4412", lines: int = 40) -> str:
    """A needle among ``lines`` filler lines (about 45 characters each)."""
    filler = [f"Line {i}: nothing of interest happens here." for i in range(lines)]
    filler.insert(lines // 2, f"The secret code is {code}.")
    return "\n".join(filler) + "\n"


def is_direct(req: Request) -> bool:
    return req.system == DIRECT_SYSTEM


def teach_direct(model: ScriptedModel) -> list[Request]:
    """Make ``model`` answer direct prompts; returns the list the requests go to."""
    seen: list[Request] = []

    def respond(req: Request) -> str:
        seen.append(req)
        m = _DIRECT.search(req.last_user)
        if m is None:
            return "I cannot tell what is asked."
        return answer_from_text(m["q"].strip(), m["text"])

    model.add_rule(is_direct, respond, name="direct")
    return seen


def completions(server: ScriptedServer) -> list[Any]:
    """The completion requests the server answered (faults excluded)."""
    return server.stats.completions()


def refused(server: ScriptedServer) -> list[Any]:
    return [r for r in server.stats.log if r.fault == "context_length"]


def server_tokens(server: ScriptedServer) -> int:
    return sum(server.stats.tokens())


def wire_options(server: ScriptedServer, backend: str) -> dict[str, Any]:
    """Engine options that reach ``server`` on ``backend``'s wire."""
    return {
        "backend": backend,
        "model": "scripted-root",
        "base_url": server.base_url if backend == "openai" else server.url,
        "api_key": "sk-test",
        "max_retries": 0,
    }
