"""RLMChatModel calls that extend an earlier call's messages continue its conversation:
the same REPL (rebuilt once by replay, then kept live), no material read twice, and a
follow-up that needs nothing new costs one root call."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from rlm_engine.scripted import ScriptedModel, ScriptedServer
from rlm_integrations.langchain import RLMChatModel
from rlm_integrations.langchain.conversations import STORE

DOC = "\n".join(f"entry {i}: amount {i * 5}" for i in range(80))
TURN_1 = (
    "```repl\nparts = [context[i:i + 500] for i in range(0, len(context), 500)]\n"
    "notes = llm_query_batched([f'Summarize: {p}' for p in parts])\n"
    "n = str(len(notes))\n```"
)


@pytest.fixture
def llm(scripted_server: ScriptedServer) -> RLMChatModel:
    return RLMChatModel(
        backend="openai",
        model="scripted-root",
        sub_model="scripted-sub",
        base_url=scripted_server.base_url,
        api_key="sk-test",
        environment="local",
    )


@pytest.fixture(autouse=True)
def forget_conversations():
    yield
    STORE.loop.run(STORE.aclose_all())


def script(model: ScriptedModel) -> None:
    model.add_rule(
        lambda r: r.is_rlm_root and "How many parts" in r.last_user + r.first_user,
        [TURN_1, "FINAL_VAR(n)"],
    )
    model.add_rule(
        lambda r: r.is_rlm_root and "first note" in r.first_user,
        ["```repl\nfirst = notes[0][:10]\n```", "FINAL_VAR(first)"],
    )
    model.add_rule(lambda r: r.is_rlm_root and "Thanks" in r.first_user, ["FINAL(You're welcome.)"])


def subs(server: ScriptedServer) -> int:
    return sum(1 for r in server.stats.log if r.model == "scripted-sub" and r.status == 200)


def roots(server: ScriptedServer) -> int:
    return sum(1 for r in server.stats.log if r.model == "scripted-root" and r.status == 200)


def test_a_call_extending_the_last_one_continues_its_repl(
    llm: RLMChatModel, scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    script(scripted_model)
    history = [HumanMessage("How many parts are there?")]
    one = llm.invoke(history, context=DOC)
    assert one.content == str(len(DOC) // 500 + 1)
    paid = subs(scripted_server)
    rebuilds = STORE.rebuilds
    history += [one, HumanMessage("What does the first note start with?")]
    two = llm.invoke(history, context=DOC)
    assert two.content
    assert subs(scripted_server) == paid  # `notes` came from the first call's REPL
    assert STORE.rebuilds == rebuilds + 1  # rebuilt once by replay (no LM call) ...
    history += [two, HumanMessage("Thanks!")]
    before = roots(scripted_server), subs(scripted_server)
    three = llm.invoke(history, context=DOC)
    assert three.content == "You're welcome."
    assert (roots(scripted_server), subs(scripted_server)) == (before[0] + 1, before[1])
    assert STORE.rebuilds == rebuilds + 1  # ... then kept live


async def test_async_calls_continue_too(
    llm: RLMChatModel, scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    script(scripted_model)
    one = await llm.ainvoke([HumanMessage("How many parts are there?")], context=DOC)
    paid = subs(scripted_server)
    msgs = [HumanMessage("How many parts are there?"), one, HumanMessage("The first note?")]
    two = await llm.ainvoke(msgs, context=DOC)
    assert two.content and subs(scripted_server) == paid


def test_other_threads_contexts_and_opt_out_start_fresh(
    llm: RLMChatModel, scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    # A fresh run (no earlier turn in its opening message) checks for `notes` and says so.
    scripted_model.add_rule(
        lambda r: (
            r.is_rlm_root and "first note" in r.first_user and "Earlier turns" not in r.first_user
        ),
        ["```repl\nprint('notes' in globals())\n```", "FINAL(fresh)"] * 3,
    )
    script(scripted_model)
    first = [HumanMessage("How many parts are there?")]
    one = llm.invoke(first, context=DOC, config={"configurable": {"thread_id": "a"}})
    follow = [*first, one, HumanMessage("The first note?")]
    other_thread = llm.invoke(follow, context=DOC, config={"configurable": {"thread_id": "b"}})
    assert other_thread.content == "fresh"
    other_context = llm.invoke(follow, context=DOC + "\nmore")
    assert other_context.content == "fresh"
    off = llm.model_copy(update={"conversations": False})
    assert off.invoke(follow, context=DOC).content == "fresh"


def test_new_material_in_a_later_message_gets_its_own_variable(
    llm: RLMChatModel, scripted_model: ScriptedModel
) -> None:
    script(scripted_model)
    scripted_model.add_rule(
        lambda r: r.is_rlm_root and "context_1" in r.first_user,
        ["```repl\nprint(len(context_1), len(notes))\n```", "FINAL(seen)"],
    )
    first = [HumanMessage("How many parts are there?")]
    one = llm.invoke(first, context=DOC)
    appendix = "appendix line\n" * 600  # a pasted document, longer than max_query_chars
    msgs = [*first, one, HumanMessage(appendix), HumanMessage("Compare the appendix.")]
    two = llm.invoke(msgs, context=DOC)
    assert two.content == "seen"
    assert isinstance(one, AIMessage)


def test_calls_with_bound_tools_start_fresh(scripted_server: ScriptedServer) -> None:
    """A multi-turn agent with tools: the second question still gets its tool call (a
    REPL continued from the first call would lack the call's tool functions)."""
    from langchain_core.messages import ToolMessage
    from langchain_core.tools import tool

    @tool
    def get_order_status(order_id: str) -> str:
        """Status of an order."""
        return f"Order {order_id} shipped."

    llm = RLMChatModel(
        backend="openai",
        model="scripted-root",
        base_url=scripted_server.base_url,
        api_key="sk-test",
        environment="local",
    ).bind_tools([get_order_status])
    msgs: list = [HumanMessage("What is the status of order 'A-1042'?")]
    first = llm.invoke(msgs)
    call = first.tool_calls[0]
    msgs += [first, ToolMessage(get_order_status.invoke(call["args"]), tool_call_id=call["id"])]
    msgs += [llm.invoke(msgs), HumanMessage("What is the status of order 'B-7'?")]
    again = llm.invoke(msgs)
    assert [c["args"] for c in again.tool_calls] == [{"order_id": "B-7"}]
    assert len(STORE) == 0  # nothing remembered for calls with tools


def test_remembered_material_is_bounded(llm: RLMChatModel, scripted_model: ScriptedModel) -> None:
    """One-off calls keep their context alive for a possible follow-up: the store drops
    the oldest when their material passes ``max_chars`` together."""
    scripted_model.add_rule(lambda r: r.is_rlm_root, ["FINAL(ok)"] * 3)
    old = STORE.max_chars
    STORE.max_chars = len(DOC) + 10  # room for one of them
    try:
        for i in range(3):
            llm.invoke([HumanMessage(f"Question {i}?")], context=DOC + str(i))
        STORE.loop.run(STORE.evict())
        assert len(STORE) == 1
    finally:
        STORE.max_chars = old
