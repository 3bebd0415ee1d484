"""Native structured output for RLMs: the final answer is JSON checked against a schema.

The root LM is told the schema; when its ``FINAL`` answer does not parse or validate, the
same run continues with the error as feedback (see ``RLMChatModel``), so the retry keeps
the REPL state and costs one more root turn, not a new run.

Every ``method`` works the same way inside the RLM; they differ only in the raw message:
``json_schema`` and ``json_mode`` return the JSON as content, ``function_calling`` returns
it as the arguments of a tool call named after the schema.
"""

from __future__ import annotations

import ast
import json
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import BaseMessage
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from pydantic.v1 import BaseModel as BaseModelV1

Method = Literal["json_schema", "function_calling", "json_mode"]
METHODS: tuple[str, ...] = ("json_schema", "function_calling", "json_mode")
_FENCE = re.compile(r"^```(?:json|JSON)?\s*\n(.*?)\n?```\s*$", re.S)


class OutputValidationError(ValueError):
    """The RLM's answer is not valid for the requested schema."""


@dataclass(frozen=True)
class OutputSchema:
    """A structured-output schema in the forms the run and the parser need."""

    schema: Any
    name: str
    json_schema: dict[str, Any]
    method: str = "json_schema"

    @classmethod
    def from_schema(cls, schema: Any, method: str = "json_schema") -> OutputSchema:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if schema is None:
            if method != "json_mode":
                raise ValueError("A schema is required unless method='json_mode'.")
            return cls(None, "json_object", {"type": "object"}, method)
        json_schema = convert_to_json_schema(schema)
        name = convert_to_openai_tool(schema)["function"]["name"]
        return cls(schema, name, json_schema, method)

    def response_format(self) -> dict[str, Any]:
        """The JSON-serializable description passed to the model as a call kwarg."""
        return {
            "type": "json_schema",
            "method": self.method,
            "json_schema": {"name": self.name, "schema": self.json_schema},
        }

    @classmethod
    def from_response_format(cls, fmt: Mapping[str, Any]) -> OutputSchema:
        """From our ``response_format`` or an OpenAI-style one (json_schema / json_object)."""
        if fmt.get("type") == "json_object":
            return cls(None, "json_object", {"type": "object"}, "json_mode")
        if fmt.get("type") != "json_schema":
            raise ValueError(f"Unsupported response_format {dict(fmt)!r}")
        spec = fmt.get("json_schema") or {}
        schema = dict(spec.get("schema") or {"type": "object"})
        return cls(None, spec.get("name", "output"), schema, fmt.get("method", "json_schema"))

    def instructions(self) -> str:
        schema = json.dumps(self.json_schema, ensure_ascii=False)
        return (
            "Your final answer must be one JSON object, without prose or code fences, that "
            f"validates against this JSON schema: {schema}\n"
            "Build it as a dict in the REPL and finish with FINAL(json.dumps(result))."
        )

    def check(self, text: str) -> Any:
        """The answer parsed and validated against the JSON schema; raises with the reason."""
        value = parse_json_answer(text)
        errors = validate(value, self.json_schema)
        if errors:
            raise OutputValidationError("; ".join(errors[:5]))
        return value

    def to_python(self, value: Any) -> Any:
        """The parsed value in the caller's type: a pydantic instance, else the dict."""
        schema = self.schema
        if isinstance(schema, type) and is_basemodel_subclass(schema):
            if issubclass(schema, BaseModel):
                return schema.model_validate(value)
            if issubclass(schema, BaseModelV1):
                return schema.parse_obj(value)
        if isinstance(schema, type) and hasattr(schema, "__annotations__"):
            try:
                return TypeAdapter(schema).validate_python(value)  # TypedDict
            except PydanticValidationError as e:
                raise OutputValidationError(str(e)) from e
        return value


def parse_json_answer(text: str) -> Any:
    """JSON in the answer: bare, fenced, embedded in prose, or a Python dict literal."""
    s = text.strip()
    m = _FENCE.match(s)
    if m:
        s = m.group(1).strip()
    candidates = [s]
    start, end = s.find("{"), s.rfind("}")
    if 0 <= start < end:
        candidates.append(s[start : end + 1])
    for c in candidates:
        try:
            return json.loads(c)
        except ValueError:
            pass
        try:
            value = ast.literal_eval(c)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict | list):
            return value
    raise OutputValidationError(f"the answer is not a JSON object: {text[:200]!r}")


_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    expected = _TYPES.get(kind)
    return expected is None or isinstance(value, expected)


def validate(value: Any, schema: Any, root: Any = None, path: str = "$") -> list[str]:
    """Errors of ``value`` against the JSON-schema subset LangChain schemas produce."""
    root = schema if root is None else root
    if not isinstance(schema, Mapping):
        return []
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return validate(value, target, root, path)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [validate(value, o, root, path) for o in schema[key]]
            if all(options):
                return [f"{path}: matches none of the allowed forms ({options[0][0]})"]
    for sub in schema.get("allOf") or []:
        errs = validate(value, sub, root, path)
        if errs:
            return errs
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_type_ok(value, k) for k in kinds):
            return [f"{path}: expected {' or '.join(kinds)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    errors: list[str] = []
    if isinstance(value, int | float) and not isinstance(value, bool):
        for key, ok in (
            ("minimum", operator.ge),
            ("maximum", operator.le),
            ("exclusiveMinimum", operator.gt),
            ("exclusiveMaximum", operator.lt),
        ):
            if key in schema and not ok(value, schema[key]):
                errors.append(f"{path}: {value} violates {key}={schema[key]}")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for req in schema.get("required") or []:
            if req not in value:
                errors.append(f"{path}: missing required key {req!r}")
        for k, v in value.items():
            if k in props:
                errors.extend(validate(v, props[k], root, f"{path}.{k}"))
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            errors.extend(validate(item, schema["items"], root, f"{path}[{i}]"))
    return errors


def structured_parser(schema: OutputSchema) -> Callable[[BaseMessage], Any]:
    """Message -> parsed output: tool-call arguments or JSON content, in the caller's type."""

    def parse(message: BaseMessage) -> Any:
        calls = getattr(message, "tool_calls", None)
        value = calls[0]["args"] if calls else parse_json_answer(message.text)
        return schema.to_python(value)

    return parse


def retry_message(error: Exception, schema: OutputSchema) -> str:
    """The feedback the root LM gets when its answer does not validate."""
    return (
        f"Your FINAL answer is not valid for the required output schema: {error}\n"
        f"{schema.instructions()}"
    )
