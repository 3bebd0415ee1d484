"""How conversations map to (context, query): the root LM must not get the material."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from rlm_integrations.langchain.messages import UnsupportedContentError, split_messages

DOC = "word " * 5_000  # 25,000 characters


def test_short_single_message_is_both_query_and_context() -> None:
    r = split_messages([HumanMessage("What is 2+3?")])
    assert r.query == "What is 2+3?"
    assert r.context == "What is 2+3?"


def test_long_system_message_becomes_the_context() -> None:
    r = split_messages([SystemMessage(DOC), HumanMessage("How many words?")])
    assert r.context == DOC
    assert r.query == "How many words?"


def test_short_system_message_is_an_instruction_in_the_query() -> None:
    r = split_messages(
        [SystemMessage("Answer in French."), SystemMessage(DOC[:100]), HumanMessage("Q?")],
        context=DOC,
    )
    assert r.query is not None
    assert r.query.startswith("Instructions: Answer in French.")
    assert r.query.endswith("Q?")
    assert r.context == DOC


def test_long_human_message_moves_to_the_context() -> None:
    r = split_messages([HumanMessage(DOC + "\nQuestion: how many words?")])
    assert r.context.startswith(DOC)
    assert r.query == "The task is stated inside the context; find it and complete it."


def test_earlier_turns_are_structured_context_and_explicit_context_is_kept() -> None:
    msgs = [HumanMessage("first"), AIMessage("reply"), HumanMessage("second?")]
    r = split_messages(msgs)
    assert r.context == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply"},
    ]
    assert r.query == "second?"
    both = split_messages(msgs, context=DOC)
    assert both.context == {"context": DOC, "messages": r.context}


def test_tool_turn_after_the_question_is_shown_in_the_query() -> None:
    msgs = [
        HumanMessage("What is 1 + 2?"),
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1"}]),
        ToolMessage("3", name="add", tool_call_id="c1"),
        ToolMessage("x" * 10_000, name="dump", tool_call_id="c2", status="error"),
    ]
    r = split_messages(msgs, context=DOC)
    assert r.query is not None
    assert 'You requested the tool call add({"a": 1, "b": 2}) [id c1].' in r.query
    assert "Result of tool call add [id c1]: 3" in r.query
    # A huge tool result is not pasted into the query; it goes to the context.
    assert "x" * 10_000 not in r.query
    assert "Result of tool call dump [id c2] (error): 10,000 characters" in r.query
    assert r.context["messages"][0]["tool_call_id"] == "c2"


def test_media_blocks_are_rejected_with_a_hint() -> None:
    msg = HumanMessage(
        [{"type": "text", "text": "look"}, {"type": "image", "url": "http://x/y.png"}]
    )
    with pytest.raises(UnsupportedContentError, match="'image' content block.*Extract the text"):
        split_messages([msg])


def test_thinking_and_tool_use_blocks_are_ignored_not_rejected() -> None:
    ai = AIMessage(
        [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "Hello there"}]
    )
    r = split_messages([HumanMessage("hi"), ai, HumanMessage([{"type": "text", "text": "ok"}])])
    assert r.context == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello there"},
    ]
    assert r.query == "ok"


def test_long_ai_message_in_the_current_turn_moves_to_the_context() -> None:
    call = {"name": "lookup", "args": {"q": "x"}, "id": "c1"}
    long_ai = AIMessage("x" * 5000 + " KEYFACT", tool_calls=[call])
    r = split_messages([HumanMessage("Q?"), long_ai, ToolMessage("42", tool_call_id="c1")])
    assert isinstance(r.context, list)
    assert any("KEYFACT" in m["content"] for m in r.context)  # nothing the user sent is lost
    assert r.query is not None
    assert "You said 5,008 characters, stored in `context`." in r.query
    assert "lookup" in r.query and "42" in r.query  # the call and its result stay in view


def test_template_text_is_plain_str() -> None:
    # BaseMessage.text is langchain-core's TextAccessor, a str subclass.
    r = split_messages([SystemMessage(DOC), HumanMessage("How many words?")])
    assert type(r.context) is str
    assert type(r.query) is str


def test_empty_instructions_and_blank_question_make_no_query() -> None:
    assert split_messages([SystemMessage(""), HumanMessage(" \n")]).query is None


def test_system_instructions_stay_instructions_up_to_the_limit() -> None:
    rules = "Answer in French. " * 300  # 5,400 characters of instructions
    r = split_messages([SystemMessage(rules), HumanMessage("Q?")], context="doc")
    assert r.context == "doc"
    assert r.query is not None and r.query.startswith("Instructions: Answer in French.")


def test_a_message_can_say_what_it_is() -> None:
    short_doc = SystemMessage("Revenue was 4.2M.", additional_kwargs={"rlm": "context"})
    long_rules = SystemMessage(DOC, additional_kwargs={"rlm": "instructions"})
    r = split_messages([short_doc, HumanMessage("Q?")])
    assert r.context == "Revenue was 4.2M." and r.query == "Q?"
    r = split_messages([long_rules, HumanMessage("Q?")], context="doc")
    assert r.context == "doc" and r.query is not None and r.query.startswith("Instructions: word")
    r = split_messages([SystemMessage(DOC), HumanMessage("Q?")], max_instruction_chars=30_000)
    assert r.query is not None and r.query.startswith("Instructions: word")
