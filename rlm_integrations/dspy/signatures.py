"""The signatures of RLMModule's three predictors, derived from the user's task signature.

The root predictor's *instructions* carry the RLM instructions, so optimizers that rewrite
instructions (COPRO, MIPROv2, GEPA) rewrite the RLM prompt itself; its fields are fixed
(REPL variables and history in, reasoning and code out). Facts that may change from call to
call (limits, recursion) are not part of the optimizable text: ``call_signature`` appends
them to the predictor's *current* signature at call time, so optimized text is kept.
"""

from __future__ import annotations

from typing import Any

import dspy
from dspy.adapters.utils import get_annotation_name

# Names the REPL or the Prediction already uses; task fields may not take them.
REPL_NAMES = frozenset(
    {
        "llm_query",
        "llm_query_batched",
        "rlm_query",
        "rlm_query_batched",
        "SUBMIT",
        "FINAL",
        "FINAL_VAR",
        "SHOW_VARS",
        "print",
    }
)
RESULT_NAMES = frozenset({"trajectory", "usage", "status", "run_id"})

ROOT_TEMPLATE = """\
Produce the output fields {outputs} from the input fields {inputs}.
{task}
The inputs can be far larger than what you can read at once, so they are not shown to you. \
They are variables in a persistent Python REPL; `variables_info` gives each one's name, type, \
size and a short preview. Each turn, write Python in `code`: it runs in that REPL and its \
printed output comes back to you in `repl_history` on the next turn. Variables, imports and \
functions persist between turns. Print only what you need to see; long output is truncated.

Available in the REPL:
- the input variables: {input_names}
- `llm_query(prompt)` -> str: ask a sub-model. It sees only the prompt, so put the text it \
must read inside it.
- `llm_query_batched(prompts)` -> list[str]: many `llm_query` calls at once, answers in order. \
Much faster than a loop.
- `rlm_query(prompt, context=None)` -> str and `rlm_query_batched(prompts, contexts=None)`: give \
a sub-task to a recursive RLM with its own REPL (see the limits below).
- `SHOW_VARS()`: list the variables you defined.
- `{submit_call}`: finish with the output values. Each is checked against its type; if \
one does not fit, you get the error back and can fix it.
{tools}
Work step by step: look at the structure and size of the inputs first, split long text into \
pieces a sub-model can read, query the pieces, combine the partial answers in code, check the \
result, and only then SUBMIT. Keep exact values (numbers, ids, quotes) in variables instead of \
retyping them.

Output fields:
{output_specs}"""

SUB_INSTRUCTIONS = (
    "Answer the prompt. It is one piece of a larger task and contains all the text you need; "
    "follow its instructions about the form of the answer exactly."
)

EXTRACT_TEMPLATE = """\
A REPL session working on the task below ran out of turns before it submitted. From what its \
code printed, give the best values for the output fields.
{task}
Output fields:
{output_specs}"""


def check_task_signature(signature: type[dspy.Signature]) -> None:
    """Reject field names that would clash with REPL functions or Prediction metadata."""
    clash = sorted(set(signature.input_fields) & (REPL_NAMES | RESULT_NAMES))
    if clash:
        raise ValueError(
            f"Input field(s) {clash} clash with names the REPL or the prediction uses; "
            "rename them in the signature."
        )
    clash = sorted(set(signature.output_fields) & (REPL_NAMES | RESULT_NAMES))
    if clash:
        raise ValueError(f"Output field(s) {clash} clash with prediction metadata; rename them.")
    for name in signature.input_fields:
        if not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"Input field {name!r} must be a public Python identifier.")
    if not signature.output_fields:
        raise ValueError("The signature needs at least one output field.")


def _field_desc(name: str, info: Any) -> str:
    desc = (info.json_schema_extra or {}).get("desc", "")
    if desc == f"${{{name}}}":
        desc = ""
    kind = get_annotation_name(info.annotation)
    return f"- `{name}` ({kind})" + (f": {desc}" if desc else "")


def output_specs(signature: type[dspy.Signature]) -> str:
    return "\n".join(_field_desc(n, f) for n, f in signature.output_fields.items())


def _task_text(signature: type[dspy.Signature]) -> str:
    text = (signature.instructions or "").strip()
    # dspy fills in "Given the fields ..., produce ..." when a signature has no docstring.
    if not text or text.startswith("Given the fields"):
        return ""
    return f"\nTask: {text}\n"


def root_instructions(signature: type[dspy.Signature], tools_doc: str = "") -> str:
    inputs = list(signature.input_fields)
    outputs = list(signature.output_fields)
    return ROOT_TEMPLATE.format(
        outputs=", ".join(f"`{n}`" for n in outputs),
        inputs=", ".join(f"`{n}`" for n in inputs),
        task=_task_text(signature),
        input_names=", ".join(f"`{n}`" for n in inputs),
        submit_call=submit_call(signature),
        tools=f"{tools_doc.rstrip()}\n" if tools_doc else "",
        output_specs=output_specs(signature),
    )


def submit_call(signature: type[dspy.Signature]) -> str:
    """``SUBMIT(a=..., b=...)`` for the task's output fields."""
    return "SUBMIT(" + ", ".join(f"{n}=..." for n in signature.output_fields) + ")"


def finish_hint(signature: type[dspy.Signature]) -> str:
    """How the engine's feedback tells RLMModule's root to finish (``Repl.finish_hint``):
    the SUBMIT its instructions teach, instead of the engine's FINAL."""
    return f"call {submit_call(signature)} in your code"


def root_signature(signature: type[dspy.Signature], tools_doc: str = "") -> type[dspy.Signature]:
    """The root predictor: one RLM turn (REPL state in, reasoning and code out)."""
    root: type[dspy.Signature] = dspy.Signature(
        {
            "variables_info": (
                str,
                dspy.InputField(desc="Name, type, size and preview of each input variable"),
            ),
            "repl_history": (
                str,
                dspy.InputField(desc="Your earlier turns: reasoning, code and REPL output"),
            ),
            "iteration": (str, dspy.InputField(desc="This turn's number / turns allowed")),
            "reasoning": (
                str,
                dspy.OutputField(desc="What you know so far and what this turn's code will do"),
            ),
            "code": (str, dspy.OutputField(desc="Python code to run in the REPL")),
        },
        root_instructions(signature, tools_doc),
    )
    return root


def sub_signature() -> type[dspy.Signature]:
    """The sub-call predictor: the template every ``llm_query`` prompt is sent in."""
    sub: type[dspy.Signature] = dspy.Signature(
        {
            "prompt": (str, dspy.InputField(desc="The prompt written by the REPL code")),
            "response": (str, dspy.OutputField(desc="The answer to the prompt")),
        },
        SUB_INSTRUCTIONS,
    )
    return sub


def extract_signature(signature: type[dspy.Signature]) -> type[dspy.Signature]:
    """The fallback predictor: task outputs from the history when turns run out."""
    fields: dict[str, Any] = {
        "variables_info": (
            str,
            dspy.InputField(desc="Name, type, size and preview of each input variable"),
        ),
        "repl_history": (str, dspy.InputField(desc="The session's turns and REPL output")),
    }
    for name, info in signature.output_fields.items():
        fields[name] = (info.annotation, info)
    instructions = EXTRACT_TEMPLATE.format(
        task=_task_text(signature), output_specs=output_specs(signature)
    )
    extract: type[dspy.Signature] = dspy.Signature(fields, instructions)
    return extract


def call_signature(current: type[dspy.Signature], runtime_note: str) -> type[dspy.Signature]:
    """This call's signature: the predictor's current one (optimized text kept) plus limits."""
    if not runtime_note:
        return current
    signature: type[dspy.Signature] = current.with_instructions(
        f"{current.instructions.rstrip()}\n\n{runtime_note}"
    )
    return signature


def runtime_note(
    *, max_iterations: int, max_depth: int, max_llm_calls: int | None, environment: str
) -> str:
    recursion = (
        f"`rlm_query` starts a child RLM (nesting up to depth {max_depth})"
        if max_depth > 1
        else "`rlm_query` behaves like `llm_query` (no recursion in this run)"
    )
    calls = f"at most {max_llm_calls} LM calls in total" if max_llm_calls else "no call limit"
    return (
        f"Limits of this run: {max_iterations} turns; {calls}; {recursion}. "
        f"The REPL is the `{environment}` environment."
    )
