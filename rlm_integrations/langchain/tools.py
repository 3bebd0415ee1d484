"""Tools for an RLM chat model, in two modes chosen by ``bind_tools(..., mode=...)``.

- ``"call"`` (default; standard LangChain semantics, what agents and ``ToolNode`` need):
  the REPL gets ``CALL_TOOL(name, **arguments)``. It records a request and returns a
  marker; the root ends with ``FINAL(CALL_TOOL(...))`` (or a literal
  ``FINAL(CALL_TOOL("name", a=1))`` line), and the model returns an ``AIMessage`` whose
  ``tool_calls`` the caller executes. Results come back as ``ToolMessage``\\ s on the next
  call and are shown to the root LM in its query.
- ``"repl"``: each tool becomes a function the REPL code calls directly; it runs on the
  host during the RLM run (recorded as a sub-call) and the answer is plain text.
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from rlm_engine.environments import HostFunction

ToolsMode = Literal["call", "repl"]
CALL_TOOL = "CALL_TOOL"
_MARKER = re.compile(r"\[tool call (call_[0-9a-f]+) requested\]")
_LITERAL_CALL = re.compile(r"CALL_TOOL\(")


def tool_spec(tool: Any) -> dict[str, Any]:
    """The OpenAI function spec (``{"name", "description", "parameters"}``) of any tool."""
    spec: dict[str, Any] = convert_to_openai_tool(tool)["function"]
    return spec


def normalize_tool_choice(choice: Any, names: Sequence[str]) -> str | None:
    """``None`` (model decides), ``"any"`` (some tool must be called) or a tool name."""
    if choice in (None, False, "auto", "none"):
        return None
    if choice in (True, "any", "required"):
        return "any"
    if isinstance(choice, Mapping):
        choice = (choice.get("function") or {}).get("name") or choice.get("name")
    if isinstance(choice, str) and choice in names:
        return choice
    raise ValueError(f"tool_choice {choice!r} names no bound tool; bound tools: {list(names)}")


def _signature(spec: Mapping[str, Any]) -> str:
    params = spec.get("parameters") or {}
    props = params.get("properties") or {}
    required = set(params.get("required") or [])
    args = []
    for name, schema in props.items():
        kind = schema.get("type") or "any"
        args.append(f"{name}: {kind}" + ("" if name in required else " = optional"))
    return f"{spec['name']}({', '.join(args)})"


@dataclass
class ToolCallRequests:
    """The ``CALL_TOOL`` REPL function of one run and the calls it recorded."""

    specs: list[dict[str, Any]]
    choice: str | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [s["name"] for s in self.specs]

    def doc(self) -> str:
        lines = [
            f"- `{CALL_TOOL}(name: str, **arguments) -> str`: ask the caller to run one of "
            "the tools below; the result comes back to you in a later task. Request the "
            f"calls you need, then end with `FINAL({CALL_TOOL}(...))` (several requests: "
            "FINAL of a note saying you wait for the results). Tools the caller can run:"
        ]
        for spec in self.specs:
            desc = " ".join((spec.get("description") or "").split())
            schema = json.dumps(spec.get("parameters") or {}, ensure_ascii=False)
            lines.append(f"  - {_signature(spec)}: {desc} Arguments JSON schema: {schema}")
        if self.choice == "any":
            lines.append("  You must request at least one tool call before FINAL.")
        elif self.choice:
            lines.append(f"  You must request a call of `{self.choice}` before FINAL.")
        return "\n".join(lines)

    async def request(self, name: Any = None, arguments: Any = None, /, **kwargs: Any) -> str:
        if name not in self.names:
            raise ValueError(f"{CALL_TOOL}: unknown tool {name!r}; available: {self.names}")
        if arguments is not None and not isinstance(arguments, Mapping):
            raise TypeError(f"{CALL_TOOL}: arguments must be a dict or keywords, got {arguments!r}")
        arguments = {**(arguments or {}), **kwargs}
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        self.calls.append({"name": name, "args": arguments, "id": call_id, "type": "tool_call"})
        return f"[tool call {call_id} requested]"

    def host_function(self) -> HostFunction:
        return HostFunction(CALL_TOOL, self.request, self.doc())

    def finish(self, answer: str) -> tuple[str, list[dict[str, Any]]]:
        """The answer text without markers, and the tool calls the run requested."""
        calls = list(self.calls)
        if not calls:
            calls = _literal_calls(answer, self.names)
            if calls:
                answer = ""
        text = _MARKER.sub("", answer).strip()
        return text, calls

    def problem(self, calls: list[dict[str, Any]]) -> str | None:
        """Feedback for the root LM when the required tool call is missing."""
        if self.choice == "any" and not calls:
            return (
                "The caller requires a tool call. Call CALL_TOOL(name, **arguments) with one "
                f"of {self.names}, then end with FINAL(CALL_TOOL(...))."
            )
        if self.choice and self.choice != "any" and self.choice not in {c["name"] for c in calls}:
            return (
                f"The caller requires a call of the tool {self.choice!r}. Call "
                f"CALL_TOOL({self.choice!r}, **arguments), then end with FINAL(CALL_TOOL(...))."
            )
        return None


def _literal_calls(answer: str, names: Sequence[str]) -> list[dict[str, Any]]:
    """Tool calls written as text, e.g. a ``FINAL(CALL_TOOL("f", x=1))`` line."""
    calls: list[dict[str, Any]] = []
    for m in _LITERAL_CALL.finditer(answer):
        src = answer[m.start() :]
        for end in range(len(src), len(CALL_TOOL) + 2, -1):
            if src[end - 1] != ")":
                continue
            try:
                node = ast.parse(src[:end], mode="eval").body
            except SyntaxError:
                continue
            if isinstance(node, ast.Call) and node.args:
                try:
                    name = ast.literal_eval(node.args[0])
                    args = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
                except ValueError:
                    break
                if name in names:
                    calls.append(
                        {
                            "name": name,
                            "args": args,
                            "id": f"call_{uuid.uuid4().hex[:24]}",
                            "type": "tool_call",
                        }
                    )
            break
    return calls


def repl_tools(tools: Sequence[Any]) -> tuple[dict[str, HostFunction], str]:
    """Host functions running ``tools`` inside the RLM run, and their prompt doc."""
    fns: dict[str, HostFunction] = {}
    lines = ["Tools you can call directly from REPL code (they run on the host):"]
    for tool in tools:
        if not isinstance(tool, BaseTool):
            from langchain_core.tools import tool as as_tool

            if not callable(tool) or isinstance(tool, type):
                raise TypeError(
                    f"mode='repl' runs tools during the RLM run, so each tool needs an "
                    f"implementation (a BaseTool or a function); got {tool!r}. Use "
                    "mode='call' for schema-only tools."
                )
            tool = as_tool(tool)
        spec = tool_spec(tool)
        fns[spec["name"]] = HostFunction(spec["name"], _runner(tool), spec.get("description", ""))
        desc = " ".join((spec.get("description") or "").split())
        lines.append(f"- `{_signature(spec)}` (keyword arguments): {desc}")
    return fns, "\n".join(lines)


def _runner(tool: BaseTool) -> Any:
    async def run_tool(*args: Any, **kwargs: Any) -> Any:
        if args:
            if len(args) == 1 and not kwargs and isinstance(args[0], dict):
                kwargs = args[0]
            else:
                fields = list((tool_spec(tool).get("parameters") or {}).get("properties") or {})
                kwargs = {**dict(zip(fields, args, strict=False)), **kwargs}
        result = await tool.ainvoke(kwargs)
        content = getattr(result, "content", result)  # ToolMessage-returning tools
        try:
            json.dumps(content)
        except (TypeError, ValueError):
            content = str(content)
        return content

    return run_tool
