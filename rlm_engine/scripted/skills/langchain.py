"""Scripted-model skills for ``RLMChatModel``'s tool-calling and structured-output prompts.

The scripted root policy knows long-context tasks but not the ``CALL_TOOL`` convention of
:mod:`rlm_integrations.langchain` or its JSON-schema instruction. These skills make the
offline model use them the way a competent root LM would, so the LangChain standard suites,
the LangGraph tests and ``examples/langchain_agent.py`` exercise the real code paths (REPL
code, host functions, ``FINAL``, validation retries) without an LLM. Every new
:class:`~rlm_engine.scripted.ScriptedModel` has them; :func:`install` adds them to a bare
one::

    server = ScriptedServer(install(ScriptedModel.bare()))

- :func:`tool_call_skill`: with tools bound, the first root turn writes
  ``CALL_TOOL(name, {args})`` for the tool the task names (or the forced one); once tool
  results are in the query it answers from them;
- :func:`structured_output_skill`: with a JSON schema requested, the root turn builds a
  value valid for it and ends with ``FINAL(json.dumps(result))``.

The patterns below follow the wording of ``rlm_engine.prompts.first_user_message`` (the
query) and of ``rlm_integrations.langchain`` (``tools.ToolCallRequests``,
``structured.OutputSchema.instructions``, ``messages``); this module imports neither.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rlm_engine.scripted.model import Reply, Request, ScriptedModel, Skill
from rlm_engine.scripted.policy import query_text
from rlm_engine.scripted.reader import extract_question
from rlm_engine.scripted.structured import fill_schema

__all__ = ["SKILLS", "install", "structured_output_skill", "tool_call_skill"]

_TOOL_LINE = re.compile(r"^  - (\w+)\(.*?\): .*? Arguments JSON schema: (\{.*\})$", re.M)
_SCHEMA_LINE = re.compile(r"validates against this JSON schema: (\{.*\})$", re.M)
_FORCED_NAME = re.compile(r"You must request a call of `(\w+)`")
_QUOTED = re.compile(r"'([^']+)'|\"([^\"]+)\"")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _query(req: Request) -> str:
    return query_text(req.first_user)


def _fill_args(schema: dict[str, Any], task: str) -> dict[str, Any]:
    """Arguments for a tool from the task's question (instructions around it left out):
    its numbers in order, strings from its first quoted name, else the question itself."""
    asked = task.split("Since that message:")[0]
    question = extract_question(asked) or asked
    numbers = iter(_NUMBER.findall(question) or _NUMBER.findall(asked))
    quoted = next((a or b for a, b in _QUOTED.findall(question)), None)
    text = quoted or question.strip().rstrip("?.!") or "value"
    args: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type")
        if kind in ("integer", "number"):
            raw = next(numbers, "0")
            args[name] = int(float(raw)) if kind == "integer" else float(raw)
        else:
            args[name] = fill_schema(prop, text, schema)
    return args


def _pick_tool(tools: dict[str, dict[str, Any]], system: str, task: str) -> str | None:
    forced = _FORCED_NAME.search(system)
    if forced and forced.group(1) in tools:
        return forced.group(1)
    lowered = task.lower()
    for name in tools:
        words = [w for w in name.lower().split("_") if len(w) > 3]
        if name.lower() in lowered or any(w in lowered for w in words):
            return name
    if "You must request at least one tool call" in system or "tool" in lowered:
        return next(iter(tools))
    return None


def tool_call_skill(req: Request) -> Reply | None:
    """Root turn: request the fitting tool with CALL_TOOL, or answer from tool results."""
    if not req.is_rlm_root or "CALL_TOOL(name" not in req.system:
        return None
    if req.turn > 0 and "The caller requires" not in req.last_user:
        return None  # later turns: the default policy, unless told to call a tool
    task = _query(req)
    if "Result of tool call" in task:
        results = re.findall(r"Result of tool call .*?\]( \(error\))?: (.*)", task)
        answer = "; ".join(r for _, r in results) or "done"
        failed = any(err for err, _ in results)
        prefix = "The tool reported an error: " if failed else "The tool returned: "
        return Reply(text=f"I have the tool results.\nFINAL({prefix}{answer})")
    tools = {m.group(1): json.loads(m.group(2)) for m in _TOOL_LINE.finditer(req.system)}
    name = _pick_tool(tools, req.system, task)
    if name is None:
        return None
    args = _fill_args(tools[name], task)
    code = f"# step: tool-call\nrequest = CALL_TOOL({name!r}, {args!r})\nFINAL(request)"
    return Reply(text=f"The caller should run {name} for this.\n```repl\n{code}\n```")


def structured_output_skill(req: Request) -> Reply | None:
    """Root turn: build a dict valid for the requested JSON schema and FINAL its JSON."""
    if not req.is_rlm_root:
        return None
    m = _SCHEMA_LINE.search(req.last_user) or _SCHEMA_LINE.search(req.first_user)
    if m is None:
        return None
    schema = json.loads(m.group(1))
    task = _query(req).split("\n\nYour final answer must be")[0].strip()
    value = fill_schema(schema, f"Scripted answer to: {task}", schema)
    code = f"# step: structured\nimport json\nresult = {value!r}\nFINAL(json.dumps(result))"
    return Reply(text=f"I will build the structured answer.\n```repl\n{code}\n```")


SKILLS: tuple[Skill, ...] = (structured_output_skill, tool_call_skill)


def install(model: ScriptedModel) -> ScriptedModel:
    """Give ``model`` these skills unless it has them (new models do); returns the model."""
    for skill in SKILLS:
        if not model.has_skill(skill):
            model.add_skill(skill)
    return model
