"""A scripted-model skill that speaks DSPy's adapter formats, so DSPy runs fully offline.

Used by the DSPy tests and ``examples/dspy_optimize.py``. Every new
:class:`~rlm_engine.scripted.ScriptedModel` has it (:func:`install` adds it to a bare one),
so pointing a ``dspy.LM`` at the server is all the set-up::

    server = ScriptedServer().start()   # or: python -m rlm_engine.scripted.server
    lm = dspy.LM("openai/scripted-root", api_base=server.base_url, api_key="x", cache=False)

:func:`dspy_skill` recognizes DSPy ChatAdapter / JSONAdapter requests (``[[ ## field ## ]]``
sections) and answers them by what the signature asks for:

- an RLM turn (``variables_info``, ``repl_history`` -> ``reasoning``, ``code``), from
  ``RLMModule`` or from ``dspy.RLM``: Python that splits the longest input, queries the
  pieces with ``llm_query_batched`` and ``SUBMIT``s the combined answer. Like a weak model, it
  sometimes takes a shortcut and reads only the beginning of the input, *unless* its
  instructions ask for a "map-reduce" strategy or a few-shot demo in the prompt shows that
  strategy (code marked ``# strategy: map-reduce``). That is what lets optimizers make a
  measurable difference offline: bootstrapped demos and rewritten instructions really change
  what this model does, through the prompt and nothing else;
- a sub-call (``prompt`` -> ``response``): the scripted reader's answer to the prompt;
- an instruction proposal (any output field named ``*instruction*``, as COPRO, MIPROv2 and
  GEPA ask for): the current instruction plus the map-reduce advice;
- anything else: a minimal value of each output field's type.

GEPA's plain-text reflection prompt ("Provide the new instructions within ``` blocks") is
answered with the same proposal in a fenced block.

The patterns follow DSPy's adapters and the wording of ``rlm_integrations.dspy`` (``turns``:
``variables_info`` and ``repl_history``; ``outputs``: "SUBMIT rejected"); this module
imports neither DSPy nor the integration. The sub-call prompts its RLM code writes use the
scripted reader's own markers (``CHUNK_HEAD``, ``AGGREGATE_HEAD``, ``NOT_FOUND``).
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from rlm_engine.scripted.model import Reply, Request, ScriptedModel, Skill
from rlm_engine.scripted.reader import AGGREGATE_HEAD, CHUNK_HEAD, NOT_FOUND, answer_prompt

__all__ = [
    "HINT",
    "SHORTCUT_MARK",
    "SKILLS",
    "STRATEGY_MARK",
    "DSPyCall",
    "Variable",
    "dspy_skill",
    "format_reply",
    "install",
    "minimal_value",
    "parse_dspy",
    "parse_variables",
    "propose",
    "rlm_turn",
]

STRATEGY_MARK = "# strategy: map-reduce"  # first line of the map-reduce code (demos show it)
SHORTCUT_MARK = "# strategy: read the beginning"  # first line of the shortcut code
# What an instruction proposal adds; in the root's instructions it stops the shortcut.
HINT = (
    "Use a map-reduce strategy: split the long input into line-aligned chunks, ask "
    "llm_query_batched about every chunk, then combine the partial answers before you SUBMIT."
)
CHUNK_CHARS = 6_000
PEEK_CHARS = 3_000

_SECTION = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with |\Z)", re.S)
_FIELD_LINE = re.compile(r"^\d+\. `(\w+)` \((.*?)\)(?::|$)", re.M)


@dataclass
class DSPyCall:
    """A DSPy adapter request, parsed: what is asked, with which inputs."""

    instructions: str
    inputs: dict[str, str]
    outputs: list[tuple[str, str]]  # (name, type name)
    demos: list[str] = field(default_factory=list)  # assistant turns of few-shot demos
    json_mode: bool = False

    @property
    def output_names(self) -> list[str]:
        return [n for n, _ in self.outputs]


def parse_dspy(req: Request) -> DSPyCall | None:
    """The DSPy call in ``req``, or None when it is not an adapter-formatted request."""
    system = req.system
    if "Your output fields are:" not in system:
        return None
    head, _, rest = system.partition("Your output fields are:")
    outputs_text = rest.split("All interactions will be structured", 1)[0]
    outputs = [(m[1], m[2]) for m in _FIELD_LINE.finditer(outputs_text)]
    if not outputs:
        return None
    _, _, objective = system.partition("your objective is:")
    instructions = "\n".join(line.strip() for line in objective.strip().splitlines())
    inputs = {m[1]: m[2].strip() for m in _SECTION.finditer(req.last_user)}
    demos = [m["content"] for m in req.messages[1:-1] if m.get("role") == "assistant"]
    json_mode = bool(req.response_format) or "Outputs will be a JSON object" in system
    return DSPyCall(instructions, inputs, outputs, demos, json_mode=json_mode)


def format_reply(call: DSPyCall, values: dict[str, Any]) -> Reply:
    if call.json_mode:
        return Reply(text=json.dumps({n: values.get(n) for n in call.output_names}))
    parts = []
    for name in call.output_names:
        value = values.get(name, "")
        text = value if isinstance(value, str) else json.dumps(value)
        parts.append(f"[[ ## {name} ## ]]\n{text}")
    parts.append("[[ ## completed ## ]]")
    return Reply(text="\n\n".join(parts))


def minimal_value(name: str, kind: str) -> Any:
    kind = kind.lower()
    if kind.startswith(("int", "float")):
        return 0
    if kind.startswith("bool"):
        return False
    if kind.startswith("list"):
        return []
    if kind.startswith("dict"):
        return {}
    return f"Scripted {name.replace('_', ' ')}."


# --- instruction proposals ---------------------------------------------------------------


def propose(base: str) -> str:
    base = base.strip().strip("`").strip()
    if not base:
        return HINT
    return base if HINT in base else f"{base}\n\n{HINT}"


def _base_instruction(call: DSPyCall) -> str:
    for key in ("current_instruction", "basic_instruction", "instruction"):
        if call.inputs.get(key):
            return call.inputs[key]
    attempts = call.inputs.get("attempted_instructions", "")
    found = re.findall(r"Instruction #\d+: (.*?)(?=\n\S|\Z)", attempts, re.S)
    return found[-1] if found else ""


# --- RLM turns --------------------------------------------------------------------------


@dataclass
class Variable:
    """One input variable as the RLM turn's ``variables_info`` describes it."""

    name: str
    kind: str
    size: int
    preview: str


def parse_variables(info: str) -> list[Variable]:
    """Variables from RLMModule's ``variables_info`` or from dspy.RLM's format."""
    found = [
        Variable(m[1], m[2], int(m[3].replace(",", "")), m[4] or "")
        for m in re.finditer(
            r"^`(\w+)` \((\w+), ([\d,]+) characters[^\n]*\n(?:  description:[^\n]*\n)?"
            r"(?:  preview: ([^\n]*))?",
            info,
            re.M,
        )
    ]
    if found:
        return found
    return [
        Variable(m[1], m[2], int(m[3].replace(",", "")), m[4] or "")
        for m in re.finditer(
            r"Variable: `(\w+)`.*?\n\s*Type: (\w+).*?Total length: ([\d,]+) characters"
            r"(?:\n\s*Preview:\n\s*```\n\s*(.*?)\n\s*```)?",
            info,
            re.S,
        )
    ]


def _submit_names(instructions: str, fallback: list[str]) -> list[str]:
    """The output names of the first ``SUBMIT(a, b=...)`` the instructions show."""
    for call in re.finditer(r"SUBMIT\(([^)]*)\)", instructions):
        words = (re.match(r"\s*(\w+)", part) for part in call[1].split(","))
        names = [w[1] for w in words if w]
        if names:
            return names
    return fallback


def _turns(history: str) -> tuple[int, str]:
    """Turns so far and the last output, in RLMModule's or dspy.RLM's history format."""
    marks = list(re.finditer(r"^=== (?:Turn|Step) \d+ ===", history, re.M))
    if not marks:
        return 0, ""
    last = history[marks[-1].end() :]
    _, _, output = last.rpartition("\nOutput")
    return len(marks), output.split("\n", 1)[-1] if output else ""


def rlm_turn(call: DSPyCall) -> dict[str, str]:
    variables = parse_variables(call.inputs.get("variables_info", ""))
    if not variables:
        return {"reasoning": "I cannot see any input variables.", "code": "SHOW_VARS()"}
    text_var = max(variables, key=lambda v: v.size)
    others = [v for v in variables if v is not text_var]
    named = [v for v in others if v.name in ("question", "query", "task", "q")]
    question_var = (named or sorted(others, key=lambda v: v.size) or [text_var])[0]
    names = _submit_names(call.instructions, ["answer"])
    turn, output = _turns(call.inputs.get("repl_history", ""))
    wants_map_reduce = "map-reduce" in call.instructions.lower() or any(
        STRATEGY_MARK in d for d in call.demos
    )
    shortcut = not wants_map_reduce and zlib.crc32(question_var.preview.encode()) % 2 == 1
    submit = "SUBMIT(" + ", ".join(f"{n}=final" for n in names) + ")"
    if turn >= 2 or "SUBMIT rejected" in output:
        return {
            "reasoning": "My last attempt did not finish; I submit the value I have.",
            "code": f"final = str(final).strip()\n{submit}",
        }
    if shortcut:
        if turn == 0:
            code = (
                f"{SHORTCUT_MARK}\n"
                f"text = {text_var.name} if isinstance({text_var.name}, str) else str({text_var.name})\n"
                f"question = str({question_var.name})\n"
                f"final = llm_query({CHUNK_HEAD!r} + '\\nQuestion: ' + question + "
                f"'\\n\\nText:\\n' + text[:{PEEK_CHARS}])\n"
                "print(final)"
            )
            reasoning = "The answer is probably near the start; I ask about the first part only."
            return {"reasoning": reasoning, "code": code}
        return {"reasoning": "I have the answer.", "code": f"{SHORTCUT_MARK}\n{submit}"}
    if turn == 0:
        code = (
            f"{STRATEGY_MARK}\n"
            f"text = {text_var.name} if isinstance({text_var.name}, str) else str({text_var.name})\n"
            f"question = str({question_var.name})\n"
            "chunks, current = [], ''\n"
            "for line in text.splitlines(keepends=True):\n"
            f"    if current and len(current) + len(line) > {CHUNK_CHARS}:\n"
            "        chunks.append(current)\n"
            "        current = ''\n"
            "    current += line\n"
            "if current:\n"
            "    chunks.append(current)\n"
            f"prompts = [{CHUNK_HEAD!r} + '\\nQuestion: ' + question + '\\n\\nText:\\n' + c "
            "for c in chunks]\n"
            "answers = llm_query_batched(prompts)\n"
            f"candidates = [a.strip() for a in answers if a.strip() != {NOT_FOUND!r}]\n"
            "print(f'{len(chunks)} chunks; candidates: {candidates!r}')"
        )
        reasoning = (
            f"`{text_var.name}` has {text_var.size:,} characters: I split it into chunks and "
            "ask a sub-model about each chunk in one batch."
        )
        return {"reasoning": reasoning, "code": code}
    code = (
        f"{STRATEGY_MARK}\n"
        "import json\n"
        "if candidates:\n"
        f"    final = llm_query({AGGREGATE_HEAD!r} + '\\nQuestion: ' + question + "
        "'\\n\\nPartial answers (JSON list):\\n' + json.dumps(candidates))\n"
        "else:\n"
        f"    final = {NOT_FOUND!r}\n"
        "print(final)\n"
        f"{submit}"
    )
    return {"reasoning": "I combine the partial answers and submit.", "code": code}


def _extract(call: DSPyCall) -> dict[str, Any]:
    _, output = _turns(call.inputs.get("repl_history", ""))
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    values = {}
    for name, kind in call.outputs:
        if kind.lower().startswith(("int", "float")):
            m = re.search(r"-?\d+(?:\.\d+)?", last)
            values[name] = m.group() if m else 0
        else:
            values[name] = last or minimal_value(name, kind)
    return values


# --- dispatch ---------------------------------------------------------------------------


def dspy_skill(req: Request) -> Reply | None:
    """Answer DSPy adapter requests and GEPA's plain reflection prompt; None for the rest."""
    call = parse_dspy(req)
    if call is None:
        text = req.last_user
        if "new instruction" in text and "``` blocks" in text:
            m = re.search(r"```\n?(.*?)```", text, re.S)
            return Reply(text=f"```\n{propose(m[1] if m else '')}\n```")
        return None
    names = call.output_names
    if names == ["reasoning", "code"] and "repl_history" in call.inputs:
        return format_reply(call, rlm_turn(call))
    if names == ["response"] and "prompt" in call.inputs:
        return format_reply(call, {"response": answer_prompt(call.inputs["prompt"])})
    if any("instruction" in n for n in names):
        proposal = propose(_base_instruction(call))
        values = {
            n: proposal if "instruction" in n else minimal_value(n, k) for n, k in call.outputs
        }
        return format_reply(call, values)
    if "repl_history" in call.inputs:
        return format_reply(call, _extract(call))
    return format_reply(call, {n: minimal_value(n, k) for n, k in call.outputs})


SKILLS: tuple[Skill, ...] = (dspy_skill,)


def install(model: ScriptedModel) -> ScriptedModel:
    """Teach ``model`` DSPy's formats unless it knows them (new models do); returns it."""
    for skill in SKILLS:
        if not model.has_skill(skill):
            model.add_skill(skill)
    return model
