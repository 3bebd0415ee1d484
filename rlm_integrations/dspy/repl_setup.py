"""The setup cell RLMModule runs in a fresh REPL before the first root turn.

The engine's REPL holds one ``context``; RLMModule passes the dict of signature inputs as
that context and this cell binds every input field to its own variable (a conversation
instead puts each call's inputs in the REPL by name, so its cell binds none). It also defines
``SUBMIT`` and wraps ``FINAL`` / ``FINAL_VAR`` so every way of finishing goes through the
host-side type check (``SUBMIT_TOOL``) first: a rejected value raises in the REPL, the root
LM sees the error and the run goes on.
"""

from __future__ import annotations

SUBMIT_TOOL = "__rlm_submit__"


def setup_code(input_names: list[str] | None) -> str:
    """Python source of the setup cell; works in every environment (stdlib only).
    ``None``: bind no inputs (a conversation puts them in the REPL itself)."""
    binds = ""
    if input_names is not None:
        binds = "__rlm_inputs = context\n" + "".join(
            f"{name} = __rlm_inputs[{name!r}]\n" for name in input_names
        )
    return f"""\
{binds}__rlm_final = FINAL


def __rlm_finish(args, kwargs):
    checked = {SUBMIT_TOOL}(list(args), dict(kwargs))
    if checked.get("error"):
        raise ValueError(checked["error"])
    __rlm_final(checked["answer"])


def SUBMIT(*args, **kwargs):
    \"\"\"Finish with the output fields; each value is checked against its type.\"\"\"
    __rlm_finish(args, kwargs)


def FINAL(answer):
    __rlm_finish((answer,), {{}})


def FINAL_VAR(name):
    key = name.strip().strip("'\\"") if isinstance(name, str) else None
    if key is not None and key.isidentifier():
        if key not in globals():
            raise NameError(f"FINAL_VAR({{key!r}}): no variable named {{key!r}}; use SUBMIT(...)")
        name = globals()[key]
    __rlm_finish((name,), {{}})
"""
