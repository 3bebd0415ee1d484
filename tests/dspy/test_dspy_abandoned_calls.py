"""An RLMModule call abandoned at the run timeout is counted, and its request closed.

DSPy's LM calls do not stream, so the abandoned request is freed by closing its
connection, and the server stops generating (vLLM and llama.cpp notice a closed
connection for non-streamed requests too; so does the scripted server). The server
reports no usage for it: the run counts the client's estimate of the prompt instead of
nothing.
"""

from __future__ import annotations

import time

import dspy
import pytest
from dspy_support import chat_reply

from rlm_engine.scripted import ScriptedModel
from rlm_engine.scripted.server import ScriptedServer
from rlm_integrations.dspy import RLMModule, RLMRunError


class Vault(dspy.Signature):
    """Answer the question about the document."""

    document: str = dspy.InputField()
    question: str = dspy.InputField()
    answer: int = dspy.OutputField()


def test_a_root_call_abandoned_at_the_run_timeout_is_counted(dspy_model: ScriptedModel) -> None:
    dspy_model.add_rule(
        lambda r: "`repl_history`" in r.system, chat_reply(reasoning="x", code="SUBMIT(answer=1)")
    )
    inputs = {"document": "d" * 4000, "question": "q"}
    with ScriptedServer(dspy_model) as server:  # the same first call, answered: its size
        with dspy.context(lm=_lm(server), track_usage=True):
            RLMModule(Vault, max_iterations=3)(**inputs)
        first = server.stats.completions("scripted-root")[0].prompt_tokens
    with ScriptedServer(dspy_model, latency=3.0) as server:
        started = time.perf_counter()
        with dspy.context(lm=_lm(server), track_usage=True), pytest.raises(RLMRunError) as info:
            RLMModule(Vault, max_iterations=3, run_timeout=0.5)(**inputs)
        elapsed = time.perf_counter() - started
        deadline = time.monotonic() + 2  # well before the 3 s the reply would take
        while time.monotonic() < deadline and not [
            r for r in server.stats.log if r.path.endswith("/chat/completions")
        ]:
            time.sleep(0.02)
        (rec,) = [r for r in server.stats.log if r.path.endswith("/chat/completions")]
    # The cancelled call closed its connection and the server stopped generating.
    assert rec.abandoned and rec.status == 499
    assert rec.finished_at - rec.started_at < 2.0
    result = info.value.result
    assert result is not None and result.status == "timeout"
    assert elapsed < 2.5  # not the server's 3 s
    # The call is in the run's usage: its prompt, estimated within 10% of what the server
    # counted for the same call answered, and no output, since none arrived.
    usage = result.usage
    assert usage.calls == 1 and usage.output_tokens == 0
    assert abs(usage.input_tokens - first) <= 0.1 * first


def _lm(server: ScriptedServer) -> dspy.LM:
    return dspy.LM(
        "openai/scripted-root", api_base=server.base_url, api_key="x", cache=False, num_retries=0
    )
