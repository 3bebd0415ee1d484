"""Structured replies: forced tool calls and JSON response formats.

Frameworks ask for structured output by forcing a tool (``tool_choice``) or by setting a
JSON ``response_format``. Without this the scripted model would answer in prose and such
code paths could not run offline. Arguments are built from the JSON schema: strings get
the plain answer, numbers the first number in it, other types a minimal valid value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from rlm_engine.scripted.model import Reply, Request


def structured_reply(req: Request, answer: str) -> Reply | None:
    """A tool call or a JSON text when the request demands one, else None."""
    last_role = req.messages[-1].get("role") if req.messages else None
    tool = forced_tool(req)
    if tool is not None and last_role != "tool":
        name, schema = tool
        args = fill_schema(schema, answer, schema)
        if not isinstance(args, dict):
            args = {"value": args}
        return Reply(tool_calls=[{"name": name, "arguments": args, "id": "call_0"}])
    fmt = req.response_format or {}
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") or {}
        return Reply(text=json.dumps(fill_schema(schema, answer, schema)))
    if fmt.get("type") == "json_object":
        return Reply(text=json.dumps({"answer": answer}))
    return None


def forced_tool(req: Request) -> tuple[str, dict[str, Any]] | None:
    """``(name, parameters schema)`` of the tool the request forces, if any."""
    tools = [spec for spec in map(_tool_spec, req.tools or []) if spec is not None]
    if not tools:
        return None
    choice = req.tool_choice
    wanted: str | None = None
    if choice in ("required", "any") or (
        isinstance(choice, Mapping) and choice.get("type") == "any"
    ):
        return tools[0]
    if isinstance(choice, Mapping):
        if choice.get("type") == "function":
            wanted = (choice.get("function") or {}).get("name")
        elif choice.get("type") == "tool":
            wanted = choice.get("name")
    return next((t for t in tools if t[0] == wanted), None) if wanted else None


def _tool_spec(tool: Any) -> tuple[str, dict[str, Any]] | None:
    if not isinstance(tool, Mapping):
        return None
    if isinstance(tool.get("function"), Mapping):  # OpenAI
        fn = tool["function"]
        return str(fn.get("name")), dict(fn.get("parameters") or {})
    if "name" in tool:  # Anthropic
        return str(tool["name"]), dict(tool.get("input_schema") or {})
    return None


def fill_schema(schema: Any, answer: str, root: Any, depth: int = 0) -> Any:
    """A minimal value valid for ``schema``; strings carry ``answer``."""
    if not isinstance(schema, Mapping) or depth > 12:
        return answer
    if "$ref" in schema:
        return fill_schema(_resolve(schema["$ref"], root), answer, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or [] if o.get("type") != "null"]
        if options:
            return fill_schema(options[0], answer, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") or {}
        return {k: fill_schema(v, answer, root, depth + 1) for k, v in props.items()}
    if kind == "array":
        n = int(schema.get("minItems") or 0) or 1
        return [fill_schema(schema.get("items") or {}, answer, root, depth + 1) for _ in range(n)]
    if kind in ("integer", "number"):
        m = re.search(r"-?\d+(?:\.\d+)?", answer)
        number = float(m.group()) if m else 0.0
        return int(number) if kind == "integer" else number
    if kind == "boolean":
        return answer.strip().lower() in ("yes", "true")
    if kind == "null":
        return None
    return answer


def _resolve(ref: str, root: Any) -> Any:
    node = root
    for part in ref.lstrip("#/").split("/"):
        if not isinstance(node, Mapping) or part not in node:
            return {}
        node = node[part]
    return node
