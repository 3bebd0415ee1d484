"""The pieces behind structured output and tool calling, on edge cases."""

from __future__ import annotations

import pytest
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from rlm_integrations.langchain.structured import (
    OutputSchema,
    OutputValidationError,
    parse_json_answer,
    validate,
)
from rlm_integrations.langchain.tools import (
    ToolCallRequests,
    normalize_tool_choice,
    repl_tools,
    tool_spec,
)


class Item(BaseModel):
    name: str
    qty: int = Field(ge=1)


class Order(BaseModel):
    items: list[Item]
    note: str | None = None


def test_parse_json_answer_forms() -> None:
    assert parse_json_answer('{"a": 1}') == {"a": 1}
    assert parse_json_answer('```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json_answer('Here it is: {"a": {"b": 2}} done') == {"a": {"b": 2}}
    assert parse_json_answer("{'a': True}") == {"a": True}  # str() of a dict from FINAL(d)
    with pytest.raises(OutputValidationError, match="not a JSON object"):
        parse_json_answer("no json")


def test_validate_follows_refs_optionals_and_bounds() -> None:
    schema = OutputSchema.from_schema(Order).json_schema
    assert validate({"items": [{"name": "a", "qty": 2}]}, schema) == []
    assert validate({"items": [{"name": "a", "qty": 2}], "note": None}, schema) == []
    errors = validate({"items": [{"name": 3, "qty": 0}], "note": 5}, schema)
    assert "$.items[0].name: expected string, got int" in errors
    assert "$.items[0].qty: 0 violates minimum=1" in errors
    assert any(e.startswith("$.note: matches none of the allowed forms") for e in errors)
    assert validate({}, schema) == ["$: missing required key 'items'"]


def test_output_schema_converts_to_the_callers_type() -> None:
    out = OutputSchema.from_schema(Order, "function_calling")
    value = out.check('{"items": [{"name": "pen", "qty": 3}]}')
    order = out.to_python(value)
    assert isinstance(order, Order) and order.items[0].qty == 3
    assert out.name == "Order"
    fmt = out.response_format()
    assert OutputSchema.from_response_format(fmt).json_schema == out.json_schema
    assert OutputSchema.from_response_format({"type": "json_object"}).method == "json_mode"
    with pytest.raises(ValueError, match="schema is required"):
        OutputSchema.from_schema(None, "json_schema")


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_tool_choice_normalization() -> None:
    names = ["add"]
    assert normalize_tool_choice(None, names) is None
    assert normalize_tool_choice("auto", names) is None
    assert normalize_tool_choice("required", names) == "any"
    assert normalize_tool_choice({"type": "function", "function": {"name": "add"}}, names) == "add"
    with pytest.raises(ValueError, match="names no bound tool"):
        normalize_tool_choice("sub", names)


async def test_call_tool_records_requests_and_finishes() -> None:
    req = ToolCallRequests([tool_spec(add)], choice="any")
    marker = await req.request("add", {"a": 1}, b=2)
    text, calls = req.finish(f"Waiting for results. {marker}")
    assert text == "Waiting for results."
    assert calls[0]["name"] == "add" and calls[0]["args"] == {"a": 1, "b": 2}
    assert req.problem(calls) is None
    assert "requires a tool call" in (ToolCallRequests([tool_spec(add)], "any").problem([]) or "")
    with pytest.raises(ValueError, match="unknown tool 'mul'"):
        await req.request("mul", a=1)


def test_literal_call_in_the_answer_text() -> None:
    req = ToolCallRequests([tool_spec(add)])
    text, calls = req.finish('CALL_TOOL("add", a=(1), b=2) and then some (text)')
    assert text == ""
    assert calls[0]["args"] == {"a": 1, "b": 2}
    assert req.finish('CALL_TOOL("nope", a=1)') == ('CALL_TOOL("nope", a=1)', [])


async def test_repl_tools_accept_positional_and_keyword_arguments() -> None:
    fns, doc = repl_tools([add])
    assert "add(a: integer, b: integer)" in doc
    assert await fns["add"].fn(2, 3) == 5
    assert await fns["add"].fn(a=4, b=5) == 9
    assert await fns["add"].fn({"a": 1, "b": 1}) == 2
