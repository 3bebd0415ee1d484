"""RLMChatModel as the model of a ``langchain.agents.create_agent`` agent with a tool.

RLMChatModel's default tool mode is standard tool calling: the RLM's root model asks for
a tool with ``CALL_TOOL(name, **args)`` in its REPL and ends the run, the agent gets
``AIMessage.tool_calls``, runs the tool, and calls the model again with the
``ToolMessage``; the result is shown to the root model with the question.

    uv run python examples/langchain_agent.py

With ``OPENAI_API_KEY`` set it uses OpenAI (``RLM_MODEL`` / ``RLM_SUB_MODEL``, default
gpt-5-mini / gpt-5-nano); otherwise it starts the offline scripted server on 127.0.0.1
(with the skills that make the scripted root use ``CALL_TOOL``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool

from rlm_integrations.langchain import RLMChatModel

ORDERS = {"A-1042": "shipped on 2026-11-02 via DHL", "B-7310": "waiting for payment"}


@tool
def get_order_status(order_id: str) -> str:
    """Look up the status of an order by its id, e.g. 'A-1042'."""
    status = ORDERS.get(order_id)
    return f"Order {order_id} {status}." if status else f"There is no order {order_id}."


@contextmanager
def rlm_model() -> Iterator[RLMChatModel]:
    """OpenAI when a key is set, else the scripted model behind a local server."""
    if os.environ.get("OPENAI_API_KEY"):
        yield RLMChatModel(
            model=os.environ.get("RLM_MODEL", "gpt-5-mini"),
            sub_model=os.environ.get("RLM_SUB_MODEL", "gpt-5-nano"),
            max_iterations=10,
        )
        return
    from rlm_engine.scripted.server import ScriptedServer

    with ScriptedServer() as server:  # the scripted model speaks RLMChatModel's tool calls
        print(f"No OPENAI_API_KEY: using the scripted model at {server.base_url}")
        yield RLMChatModel(
            model="scripted-root",
            sub_model="scripted-sub",
            base_url=server.base_url,
            api_key="unused",
        )


def main() -> int:
    with rlm_model() as llm:
        agent = create_agent(
            llm,
            tools=[get_order_status],
            system_prompt="You are a support assistant. Use the tools to answer.",
        )
        result = agent.invoke({"messages": [HumanMessage("What is the status of order 'A-1042'?")]})
    for message in result["messages"]:
        calls = getattr(message, "tool_calls", None)
        shown = f"tool calls {[(c['name'], c['args']) for c in calls]}" if calls else message.text
        print(f"{type(message).__name__:>12}: {shown}")
    answer = result["messages"][-1].text
    ok = "shipped on 2026-11-02" in answer
    print("Answer is correct." if ok else "Answer is WRONG.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
