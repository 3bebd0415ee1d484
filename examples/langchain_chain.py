"""RLMChatModel in an LCEL chain: ``prompt | llm | StrOutputParser()`` over a long document.

The document (~390,000 characters of support tickets) goes into the system message; the
RLM keeps it in its REPL as ``context`` and the root model only ever sees a preview.

    uv run python examples/langchain_chain.py

With ``OPENAI_API_KEY`` set it uses OpenAI (``RLM_MODEL`` / ``RLM_SUB_MODEL``, default
gpt-5-mini / gpt-5-nano); otherwise it starts the offline scripted server on 127.0.0.1.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from rlm_integrations.langchain import RLMChatModel


def make_document(seed: int = 7, n_tickets: int = 6_000) -> tuple[str, dict[str, str]]:
    """Support tickets with one hidden fact; returns the text and the expected answers."""
    rng = random.Random(seed)
    topics = ["shipping", "billing", "returns", "warranty", "support"]
    lines = [
        f"Ticket {i}: customer asked about {rng.choice(topics)}; "
        f"resolved by agent {rng.randint(1, 40)}."
        for i in range(n_tickets)
    ]
    lines[4_321] = "Note: the vault access code is 7781."
    warranty = sum(line.count("warranty") for line in lines)
    expected = {
        "What is the vault access code?": "7781",
        "How many times does the word 'warranty' appear?": str(warranty),
    }
    return "\n".join(lines), expected


@contextmanager
def rlm_model() -> Iterator[RLMChatModel]:
    """OpenAI when a key is set, else the scripted model behind a local server."""
    if os.environ.get("OPENAI_API_KEY"):
        yield RLMChatModel(
            model=os.environ.get("RLM_MODEL", "gpt-5-mini"),
            sub_model=os.environ.get("RLM_SUB_MODEL", "gpt-5-nano"),
            max_iterations=15,
        )
        return
    from rlm_engine.scripted import ScriptedModel
    from rlm_engine.scripted.server import ScriptedServer

    with ScriptedServer(ScriptedModel()) as server:
        print(f"No OPENAI_API_KEY: using the scripted model at {server.base_url}")
        yield RLMChatModel(
            model="scripted-root",
            sub_model="scripted-sub",
            base_url=server.base_url,
            api_key="unused",
        )


def main() -> int:
    document, expected = make_document()
    prompt = ChatPromptTemplate.from_messages([("system", "{document}"), ("human", "{question}")])
    with rlm_model() as llm:
        chain = prompt | llm | StrOutputParser()
        questions = list(expected)
        answers = chain.batch([{"document": document, "question": q} for q in questions])
        # Without the parser the AIMessage carries the usage and the run metadata:
        raw = (prompt | llm).invoke({"document": document, "question": questions[0]})
    ok = True
    print(f"Document: {len(document):,} characters")
    for question, answer in zip(questions, answers, strict=True):
        good = answer.strip() == expected[question]
        ok &= good
        print(
            f"Q: {question}\nA: {answer}   (expected {expected[question]}: {'ok' if good else 'WRONG'})"
        )
    usage = raw.response_metadata["usage"]
    print(
        f"One run used {usage['total']['total_tokens']:,} tokens: "
        f"root {usage['root']['total_tokens']:,} in {usage['root']['calls']} calls, "
        f"sub {usage['sub']['total_tokens']:,} in {usage['sub']['calls']} calls; "
        f"{raw.response_metadata['iterations']} iterations."
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
