"""An RLMModule call abandoned at the run timeout is counted, and its request closed.

DSPy's LM calls do not stream, so the abandoned request is freed by closing its
connection (vLLM and llama.cpp stop a non-streamed generation when the client goes
away; the scripted server does not notice, and finishes the reply for nobody). The
server reports no usage for it: the run counts the client's estimate of the prompt
instead of nothing.
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
    with ScriptedServer(dspy_model, latency=2.0) as server:
        lm = dspy.LM(
            "openai/scripted-root",
            api_base=server.base_url,
            api_key="x",
            cache=False,
            num_retries=0,
        )
        started = time.perf_counter()
        with dspy.context(lm=lm, track_usage=True), pytest.raises(RLMRunError) as info:
            RLMModule(Vault, max_iterations=3, run_timeout=0.5)(document="d" * 4000, question="q")
        elapsed = time.perf_counter() - started
        deadline = time.monotonic() + 10  # the scripted server finishes it regardless
        while time.monotonic() < deadline and not server.stats.completions("scripted-root"):
            time.sleep(0.05)
        (served,) = server.stats.completions("scripted-root")
    result = info.value.result
    assert result is not None and result.status == "timeout"
    assert elapsed < 1.5  # not the server's 2 s
    # The call is in the run's usage: its prompt, estimated within a few percent of what
    # the server counted, and no output, since none arrived.
    usage = result.usage
    assert usage.calls == 1 and usage.output_tokens == 0
    assert abs(usage.input_tokens - served.prompt_tokens) <= 0.1 * served.prompt_tokens
