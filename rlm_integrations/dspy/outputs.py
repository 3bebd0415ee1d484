"""Turning what the root LM submits into typed output fields, with errors it can act on.

``SUBMIT(...)`` / ``FINAL(...)`` in the REPL send their arguments here before the run may
end: a value that does not parse as its field's type comes back to the root LM as an error
and the session continues. Accepted values travel through the engine as one JSON string
(the engine's final answer), which ``decode_answer`` turns back into typed values.
"""

from __future__ import annotations

import json
from typing import Any

import dspy
import pydantic
from dspy.adapters.utils import get_annotation_name, parse_value
from pydantic_core import to_jsonable_python


class SubmissionError(ValueError):
    """The submitted values do not fit the output fields; the message is for the root LM."""


def _expected(signature: type[dspy.Signature]) -> str:
    return ", ".join(
        f"{n}: {get_annotation_name(f.annotation)}" for n, f in signature.output_fields.items()
    )


def coerce_submission(
    signature: type[dspy.Signature], args: list[Any], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Map ``SUBMIT(*args, **kwargs)`` onto the output fields and parse each to its type."""
    names = list(signature.output_fields)
    if args and kwargs:
        raise SubmissionError(
            f"SUBMIT takes either positional or keyword values, not both. Expected: {_expected(signature)}."
        )
    if len(args) == 1 and not kwargs and len(names) > 1:
        args, kwargs = [], _as_mapping(args[0], signature)
    if len(args) > len(names):
        raise SubmissionError(
            f"SUBMIT got {len(args)} values for {len(names)} output field(s): {_expected(signature)}."
        )
    values = dict(zip(names, args, strict=False)) if args else dict(kwargs)
    missing = [n for n in names if n not in values]
    unknown = [k for k in values if k not in signature.output_fields]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if unknown:
            parts.append(f"unknown {unknown}")
        raise SubmissionError(
            f"SUBMIT fields do not match ({'; '.join(parts)}). Expected: {_expected(signature)}."
        )
    parsed: dict[str, Any] = {}
    errors: list[str] = []
    for name in names:
        annotation = signature.output_fields[name].annotation
        try:
            parsed[name] = parse_value(values[name], annotation)
        except (ValueError, TypeError, pydantic.ValidationError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            errors.append(
                f"`{name}` must be {get_annotation_name(annotation)}, got "
                f"{type(values[name]).__name__} {_short(values[name])} ({first})"
            )
    if errors:
        raise SubmissionError(
            "SUBMIT rejected: " + "; ".join(errors) + ". Fix the value(s) and SUBMIT again."
        )
    return parsed


def _as_mapping(value: Any, signature: type[dspy.Signature]) -> dict[str, Any]:
    """A single value for a multi-field signature: a dict, or a JSON object as text."""
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str):
        try:
            loaded = json.loads(value)
        except json.JSONDecodeError:
            loaded = None
        if isinstance(loaded, dict):
            return loaded
    raise SubmissionError(
        f"This task has several output fields; use SUBMIT({', '.join(f'{n}=...' for n in signature.output_fields)})."
    )


def _short(value: Any, n: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def encode_answer(values: dict[str, Any]) -> str:
    """The engine's final answer string for accepted values."""
    return json.dumps(to_jsonable_python(values, fallback=str), ensure_ascii=False)


def decode_answer(signature: type[dspy.Signature], text: str) -> dict[str, Any]:
    """Typed output values from a final (or partial) answer string.

    Accepts the JSON object ``encode_answer`` writes and, for single-output signatures, a
    bare value (e.g. a partial answer read from a REPL variable).
    """
    names = list(signature.output_fields)
    loaded: Any = None
    try:
        loaded = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        loaded = None
    if isinstance(loaded, dict) and set(names) <= set(loaded):
        return coerce_submission(signature, [], {n: loaded[n] for n in names})
    if len(names) == 1:
        return coerce_submission(signature, [text], {})
    raise SubmissionError(f"The answer {_short(text)} does not hold {_expected(signature)}.")
