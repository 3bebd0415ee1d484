"""Text the root LM sees: the system prompt, the context description and the turn messages.

The context itself never appears here, only its type, size and a short preview.
"""

from __future__ import annotations

from typing import Any

SYSTEM_PROMPT = """\
You answer a query about a context that is too large to read directly. The context is \
stored in a persistent Python REPL as the variable `context`; you see only a description \
of it. Work by writing Python code that inspects, slices, searches and splits `context`, and \
delegate reading of pieces to sub-models.

Write code in fenced blocks tagged `repl`:
```repl
print(len(context))
print(context[:500])
```
Each block runs in the same REPL; variables persist across blocks and turns. After each \
turn you get the (truncated) printed output, so print only what you need to see.

Functions available in the REPL:
- `llm_query(prompt: str, model: str | None = None) -> str`: ask a sub-model; it can read \
about {sub_window} characters at once. Put the text it must read inside the prompt.
- `llm_query_batched(prompts: list[str], model: str | None = None) -> list[str]`: many \
`llm_query` calls run concurrently, answers in the same order. Prefer it over a loop.
- `rlm_query(prompt: str, context=None, model: str | None = None) -> str`: hand a sub-task to \
a recursive RLM with its own REPL (`context` becomes its context; when omitted the prompt is \
its context).{depth_note}
- `rlm_query_batched(prompts: list[str], contexts=None, model=None) -> list[str]`: concurrent `rlm_query`.
- `SHOW_VARS()`: list the variables you have defined.
- `FINAL(answer)` / `FINAL_VAR(variable_name)`: end the task with an answer, from code.
{extra_tools}
Strategy: look at the structure of the context first, then split it into chunks a sub-model \
can read, query the chunks (batched), and combine the partial answers in code or with one more \
sub-call. Verify before answering.

When you are done, write on its own line, outside any code block, either `FINAL(your answer)` \
or `FINAL_VAR(variable_name)` to return a REPL variable. Code in the same response runs \
first, so `FINAL_VAR` may name a variable that response creates. Do not write FINAL before \
you have the answer.\
"""

DEPTH_NOTE_AVAILABLE = " Use it for sub-tasks that need their own chunking."
DEPTH_NOTE_LIMIT = " At this depth it behaves like `llm_query`."


def build_system_prompt(
    *,
    can_recurse: bool,
    sub_window: int = 100_000,
    tools_doc: str = "",
    template: str | None = None,
) -> str:
    """Fill the system prompt; ``template`` lets integrations (DSPy) optimize the text."""
    extra = f"{tools_doc}\n" if tools_doc else ""
    return (template or SYSTEM_PROMPT).format(
        sub_window=f"{sub_window:,}",
        depth_note=DEPTH_NOTE_AVAILABLE if can_recurse else DEPTH_NOTE_LIMIT,
        extra_tools=extra,
    )


def describe_context(context: Any, preview_chars: int = 300) -> dict[str, Any]:
    """Type, size and preview of the context: all the root LM learns about it up front.

    A ``str`` subclass is described as ``str`` (what the REPL holds: the input boundary
    hands it over as a plain ``str``), not by a class name that would mislead the root.
    """
    info: dict[str, Any] = {"type": type_name(context)}
    if isinstance(context, str):
        info["total_chars"] = len(context)
        info["preview"] = context[:preview_chars]
    elif isinstance(context, dict):
        info["keys"] = [str(k) for k in list(context)[:20]]
        info["num_keys"] = len(context)
        info["total_chars"] = sum(len(str(v)) for v in context.values())
        info["preview"] = repr({k: _short(v) for k, v in list(context.items())[:3]})[:preview_chars]
    elif isinstance(context, list | tuple):
        lengths = [len(x) if isinstance(x, str) else len(str(x)) for x in context]
        info["num_items"] = len(context)
        info["item_type"] = type_name(context[0]) if context else None
        info["total_chars"] = sum(lengths)
        info["item_chars"] = lengths[:20] + (["..."] if len(lengths) > 20 else [])
        info["preview"] = repr([_short(x) for x in context[:3]])[:preview_chars]
    else:
        text = str(context)
        info["total_chars"] = len(text)
        info["preview"] = text[:preview_chars]
    return info


def type_name(value: Any) -> str:
    """The type the root is told about: ``str`` for any ``str`` subclass."""
    return "str" if isinstance(value, str) else type(value).__name__


def _short(x: Any, n: int = 80) -> Any:
    if isinstance(x, str) and len(x) > n:
        return x[:n] + "..."
    if isinstance(x, dict):
        return {k: _short(v, n) for k, v in list(x.items())[:5]}
    return x


def first_user_message(info: dict[str, Any], query: str | None) -> str:
    """The opening user turn: context description plus the query (or a pointer to it)."""
    lines = [f"The variable `context` is a {info['type']} with {info['total_chars']:,} characters."]
    if "num_items" in info:
        lines.append(
            f"It has {info['num_items']} items of type {info['item_type']}; "
            f"item sizes in characters: {info['item_chars']}."
        )
    if "num_keys" in info:
        lines.append(f"It has {info['num_keys']} keys; first keys: {info['keys']}.")
    lines.append(f"Preview: {info['preview']!r}")
    lines.append("")
    if query:
        lines.append(f"Query: {query}")
    else:
        lines.append("Query: the task is stated inside the context; find it and complete it.")
    lines.append("")
    lines.append(
        "You have not looked at the context yet. Start by writing code in the REPL; "
        "do not answer before you have inspected it."
    )
    return "\n".join(lines)


#: How feedback tells the root to finish, by default: the engine's own convention, which
#: every REPL has. A form with another convention sets ``Repl.finish_hint`` (RLMModule:
#: ``SUBMIT``); see :func:`finish_hint`.
FINISH_HINT = "give FINAL(...) / FINAL_VAR(name) on its own line"


def finish_hint(hint: str | None, depth: int = 0) -> str:
    """The finishing instruction feedback at ``depth`` gives: the form's own (``hint``,
    from ``Repl.finish_hint``) at the top level, whose REPL ran the form's set-up; the
    engine's FINAL convention in child RLMs, whose REPLs do not run it."""
    return hint if hint and depth == 0 else FINISH_HINT


def repl_feedback(
    outputs: list[str], iteration: int, remaining: int | None, finish: str | None = None
) -> str:
    """The user turn that carries the REPL output of the previous response back.

    ``finish`` completes "Continue with more code, or ..." (default :data:`FINISH_HINT`).
    """
    body = "\n\n".join(outputs) if outputs else "(no output)"
    tail = (
        f"\n\n[{remaining} iterations left.] Continue with more code, or "
        f"{finish or FINISH_HINT} when you have the answer."
        if remaining is not None
        else ""
    )
    return f"REPL output:\n{body}{tail}"


def no_code_message(finish: str | None = None) -> str:
    """The note for a response with neither code nor an answer."""
    return (
        "Your response had no ```repl code block and no final answer. Write code in a "
        f"```repl block to work on `context`, or {finish or FINISH_HINT} to end the task."
    )


NO_CODE_MESSAGE = no_code_message()


def truncated_reply_message(tokens: int, ran: int, finish: str | None = None) -> str:
    """The note for a root reply cut at the reply cap (``ReplyLimits.max_tokens`` or the
    server's own): not "no code" but too long. The ``ran`` complete blocks before the cut
    did run; an unfinished block, or a FINAL the cut may have clipped, did not."""
    done = (
        f"; the {ran} complete code block{'s' if ran != 1 else ''} before it ran (output above)"
        if ran
        else ""
    )
    return (
        f"Your reply was cut off at the reply cap of {tokens:,} tokens. The unfinished code "
        f"block (or FINAL) at the end did not run{done}. Write shorter steps: one small "
        f"```repl block per reply, print only what you need, and {finish or FINISH_HINT} "
        "in a short reply when you have the answer."
    )


def truncated_answer_note(tokens: int) -> str:
    """Appended to a sub-call answer cut at the reply cap, so the code that asked sees it."""
    return f"\n[cut at the reply cap of {tokens:,} tokens]"


def missing_variable_message(
    name: str, variables: dict[str, str], finish: str | None = None
) -> str:
    """The note for ``FINAL_VAR(name)`` written as text when no such variable exists."""
    shown = ", ".join(sorted(variables)) or "none"
    return (
        f"FINAL_VAR({name}) failed: there is no REPL variable named {name!r}. "
        f"Defined variables: {shown}. Assign the answer to a variable first, or "
        f"{finish or FINISH_HINT}."
    )


def budget_exhausted_message(reason: str, finish: str | None = None) -> str:
    """What a sub-call the budget no longer allows returns into the REPL."""
    return (
        f"Error: budget exhausted ({reason}); this sub-call was not made. "
        f"Finish with what you have: {finish or FINISH_HINT}."
    )


#: The last request after ``max_iterations`` (``rlm_engine.partial_answer``). Its reply is
#: read as text, with no code run, so it asks for ``FINAL(answer)`` whatever the form's
#: finishing convention: that is the one form of answer text can carry. Clients never
#: recognize it by this text; the engine flags the call (``is_final_answer_request``).
FINAL_ANSWER_REQUEST = (
    "You have run out of iterations. Based on everything above, give your best final answer "
    "now, as FINAL(answer) on its own line, without any more code."
)
