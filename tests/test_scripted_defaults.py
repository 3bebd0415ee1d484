"""The offline server, started with the README's command, drives every integration feature.

``python -m rlm_engine.scripted.server`` runs as a real subprocess on 127.0.0.1; the
integrations reach it only through the set-up the README documents (``RLM_API_URL`` for the
engine's clients, ``api_base=`` for a ``dspy.LM``), with no skill installed by hand.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import dspy
import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from rlm_engine import RLM
from rlm_integrations.dspy import RLMModule
from rlm_integrations.langchain import RLMChatModel

NEEDLE = "The secret code is 4729."


def needle_doc(n_lines: int = 3000) -> str:
    lines = [f"Line {i}: the weather report says nothing of interest." for i in range(n_lines)]
    lines[n_lines // 2] = NEEDLE
    return "\n".join(lines)


DOC = needle_doc()


@contextmanager
def serve(*flags: str) -> Iterator[str]:
    """``python -m rlm_engine.scripted.server --port 0`` as a subprocess; its OpenAI URL.

    Stopped with Ctrl-C (SIGINT) at the end, which must exit it cleanly.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlm_engine.scripted.server", "--port", "0", "--quiet", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:\d+/v1", line)
        assert m, f"no URL in the server's first line: {line!r}"
        yield m.group(0)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """The README's command, with the defaults, shared by this module's tests."""
    with serve() as url:
        yield url


@pytest.fixture
def rlm_api_url(server_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The README's set-up for the engine's clients: ``export RLM_API_URL=...``."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RLM_API_URL", server_url)
    return server_url


def test_dspy_rlm_module_runs_against_the_server(server_url: str) -> None:
    lm = dspy.LM("openai/scripted-root", api_base=server_url, api_key="unused", cache=False)
    rlm = RLMModule("context, question -> answer", max_iterations=6)
    # A short document: the scripted DSPy skill reads only the start of the input on some
    # questions (so optimizers have something to fix); the needle is found either way.
    with dspy.context(lm=lm):
        pred = rlm(context=needle_doc(40), question="What is the secret code?")
    assert pred.status == "final"
    assert pred.answer == "4729"


def test_bind_tools_requests_a_tool_call(rlm_api_url: str) -> None:
    @tool
    def get_order_status(order_id: str) -> str:
        """Look up the status of an order by its id."""
        return f"Order {order_id} shipped."

    llm = RLMChatModel(model="scripted-root", max_iterations=6).bind_tools([get_order_status])
    msg = llm.invoke("What is the status of order 'A-1042'?")
    assert [(c["name"], c["args"]) for c in msg.tool_calls] == [
        ("get_order_status", {"order_id": "A-1042"})
    ]


def test_with_structured_output_returns_the_schema(rlm_api_url: str) -> None:
    class Verdict(BaseModel):
        summary: str
        score: int

    llm = RLMChatModel(model="scripted-root", max_iterations=6).with_structured_output(Verdict)
    out = llm.invoke("Rate the weather report from 1 to 10.")
    assert isinstance(out, Verdict)


def test_a_question_after_instructions_is_answered(rlm_api_url: str) -> None:
    llm = RLMChatModel(model="scripted-root", max_iterations=6)
    msg = llm.invoke(
        [
            SystemMessage("You are a careful analyst. Answer with the value only."),
            HumanMessage("Read the log below and answer: what is the secret code?"),
        ],
        context=DOC,
    )
    assert msg.content == "4729"


@pytest.mark.parametrize(
    "query",
    [
        "What is the secret code?",
        "You are terse. Reply with the value only.\nWhat is the secret code?",
        "Instructions: be brief.\n\nI need this for a report. What is the secret code? Thanks.",
        "Answer in one word. Find the secret code",
    ],
)
def test_in_process_backend_reads_the_question_anywhere(query: str) -> None:
    res = RLM(backend="scripted", max_iterations=6).completion(DOC, query)
    assert res.response == "4729"


def test_bare_flag_serves_the_policies_alone() -> None:
    """``--bare`` leaves the standard skills out: a DSPy request gets plain prose."""
    dspy_request = [
        {
            "role": "system",
            "content": "Your input fields are:\n1. `question` (str):\nYour output fields are:\n"
            "1. `answer` (str):\nAll interactions will be structured in the following way",
        },
        {"role": "user", "content": "[[ ## question ## ]]\nWhy?"},
    ]
    replies = {}
    for flags in ([], ["--bare"]):
        with serve(*flags) as url, openai.OpenAI(base_url=url, api_key="unused") as client:
            reply = client.chat.completions.create(model="scripted-root", messages=dspy_request)
            replies[tuple(flags)] = reply.choices[0].message.content or ""
    assert "[[ ## answer ## ]]" in replies[()]
    assert "[[ ## answer ## ]]" not in replies[("--bare",)]
