"""Built-in policies: how the scripted model behaves when no rule or skill answered.

- RLM root requests (``Request.is_rlm_root``) get :func:`root_reply`, a small state
  machine that acts like a competent RLM on simple long-context tasks:

  1. (only when the query says the task is inside the context) print ``context[:2000]``
     and read the question from what it printed;
  2. normalize ``context`` to text pieces, split them on line boundaries into chunks of
     at most 50,000 characters, ask one sub-model per chunk with ``llm_query_batched``
     and print the non-``NOT FOUND`` candidates;
  3. combine the candidates with one ``llm_query`` and end with ``FINAL_VAR``, or answer
     ``FINAL(The context does not contain the answer.)`` when there are none.

  A REPL error triggers one retry with a simpler approach (plain slicing, sequential
  ``llm_query``); after that, on "out of iterations", or after 6 turns it gives the best
  ``FINAL`` it has. Each step's code starts with a ``# step: NAME`` comment, which is
  how the next turn knows where the conversation is (the policy itself is stateless).
- Other requests with a forced tool call or a JSON response format get a structured
  reply (:mod:`rlm_engine.scripted.structured`).
- Everything else is a sub-model call answered by :mod:`rlm_engine.scripted.reader`.
"""

from __future__ import annotations

import ast
import contextlib
import re
import textwrap
from dataclasses import dataclass, field

from rlm_engine.scripted.model import Reply, Request
from rlm_engine.scripted.reader import (
    AGGREGATE_HEAD,
    CHUNK_HEAD,
    NOT_FOUND,
    answer_prompt,
    combine_answers,
    extract_question,
    is_counting,
    sentences,
)
from rlm_engine.scripted.structured import structured_reply

MAX_TURNS = 6
MAX_CHUNK_CHARS = 50_000
NO_ANSWER = "The context does not contain the answer."

_STEP_RE = re.compile(r"^# step: ([\w-]+)", re.M)
_QUESTION_RE = re.compile(r"^question = (.+)$", re.M)
_ERROR_RE = re.compile(
    r"Traceback \(most recent call last\)|^\[error\]$|^\s*\w*(?:Error|Exception)\b", re.M
)
_OUT_OF_ITERATIONS_RE = re.compile(r"out of iterations|no (?:more )?iterations left", re.I)
_QUERY_RE = re.compile(r"^Query: ", re.M)
_IN_CONTEXT_RE = re.compile(r"\b(?:inside|in|within) the context\b", re.I)
_WINDOW_RE = re.compile(r"can read about ([\d,]+) characters")
#: The opening of a conversation's later turn (``rlm_engine.conversation.turn_message``).
_LATER_TURN_RE = re.compile(r"^This is a later turn of a conversation", re.M)
#: A remark that needs neither the material nor the REPL ("Thanks!", "Great, got it.").
_COURTESY_RE = re.compile(
    r"^(?:thanks?|thank you|thx|great|perfect|ok(?:ay)?|got it|cool|nice|awesome|"
    r"that helps|understood)\b[\w\s,.!]*$",
    re.I,
)
#: The scripted root's answer to such a remark.
COURTESY_ANSWER = "You're welcome."


def default_reply(req: Request) -> Reply:
    """The built-in answer to ``req`` (used when no rule or skill matched)."""
    if req.is_rlm_root:
        return root_reply(req)
    structured = structured_reply(req, answer_prompt(req.last_user))
    if structured is not None:
        return structured
    return Reply(text=answer_prompt(req.last_user))


# --- reading the conversation --------------------------------------------------------


@dataclass
class _Progress:
    """What earlier turns established, rebuilt from the messages on every call."""

    question: str | None = None
    last_step: str | None = None
    output: str = ""  # REPL output of the last step
    candidates: list[str] | None = None
    final_value: str | None = None
    errors: dict[str, int] = field(default_factory=dict)


def query_text(first_user: str) -> str:
    """The whole query of the opening user turn (it may span lines), else the turn itself.

    The engine's opening messages (``rlm_engine.prompts.first_user_message``, a
    conversation's later turns) put the query after ``Query: `` and end with one paragraph
    of advice; callers may have put instructions, a question and tool results in the query,
    on as many lines and paragraphs as they like.
    """
    m = _QUERY_RE.search(first_user)
    if m is None:
        return first_user.strip()
    query, sep, last = first_user[m.end() :].rpartition("\n\n")
    return (query if sep else last).strip()


def parse_query(first_user: str) -> str | None:
    """The question of the opening user turn; None when the task is inside the context."""
    query = query_text(first_user)
    if any(
        _IN_CONTEXT_RE.search(s) and re.search(r"\btask\b", s, re.I)
        for s in sentences(query)
        if not s.endswith("?")
    ):
        return None
    return extract_question(query)


def repl_body(user_text: str) -> str:
    """The printed output inside a REPL feedback message, without header and tail."""
    body = user_text.removeprefix("REPL output:").strip("\n")
    return re.sub(r"\n*\[\d+ iterations? left\.\].*\Z", "", body, flags=re.S)


def has_error(output: str) -> bool:
    return _ERROR_RE.search(output) is not None


def parse_candidates(output: str) -> list[str] | None:
    m = re.search(r"^candidates: (\[.*\])\s*$", output, re.M)
    if not m:
        return None
    try:
        value = ast.literal_eval(m.group(1))
    except (ValueError, SyntaxError):
        return None
    return [str(v) for v in value] if isinstance(value, list) else None


def _failed_calls(output: str) -> int:
    m = re.search(r"^failed sub-calls: (\d+)", output, re.M)
    return int(m.group(1)) if m else 0


def find_task(output: str) -> str | None:
    """The question stated in printed context: a labelled line, else the last "...?"."""
    for line in output.splitlines():
        m = re.match(r"\s*(?:question|task|query|q)\s*[:\-]\s*(.+)", line, re.I)
        if m and m.group(1).strip():
            return m.group(1).strip().strip("'\"")
    asked = re.findall(r"[^.!?\n]*\?", output)
    return asked[-1].strip().strip("'\"") if asked else None


def _progress(req: Request) -> _Progress:
    p = _Progress(question=parse_query(req.first_user))
    msgs = req.messages
    for i, msg in enumerate(msgs):
        if msg.get("role") != "assistant":
            continue
        step_m = _STEP_RE.search(msg["content"])
        question_m = _QUESTION_RE.search(msg["content"])
        if question_m:
            with contextlib.suppress(ValueError, SyntaxError):
                p.question = str(ast.literal_eval(question_m.group(1)))
        nxt = next((m for m in msgs[i + 1 :] if m.get("role") == "user"), None)
        output = repl_body(nxt["content"]) if nxt else ""
        p.last_step = step_m.group(1) if step_m else None
        p.output = output
        if p.last_step is None:
            continue
        if has_error(output):
            p.errors[p.last_step] = p.errors.get(p.last_step, 0) + 1
            continue
        if p.last_step.startswith("chunk"):
            cands = parse_candidates(output)
            if cands is not None and (cands or _failed_calls(output) == 0):
                p.candidates = cands
        elif p.last_step == "aggregate":
            lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
            if lines:
                p.final_value = lines[-1]
    return p


def _best_answer(p: _Progress) -> str:
    if p.final_value:
        return p.final_value
    if p.candidates:
        combined = combine_answers(p.question or "", p.candidates)
        if combined != NOT_FOUND:
            return combined
    if p.candidates is not None:
        return NO_ANSWER
    return "I could not determine the answer from the context."


# --- the root policy -----------------------------------------------------------------


def is_courtesy(first_user: str) -> bool:
    """Whether a conversation's later turn only says thanks (or the like): as the turn's
    prompt advises, such a turn is answered at once, without another look at the material."""
    if not _LATER_TURN_RE.search(first_user):
        return False
    query = query_text(first_user)
    return len(query) <= 60 and "?" not in query and bool(_COURTESY_RE.match(query))


def root_reply(req: Request) -> Reply:
    """The next root-LM turn of a scripted RLM run (see the module docstring)."""
    p = _progress(req)
    limit = _chunk_limit(req.system)
    if req.turn == 0:
        if is_courtesy(req.first_user):  # a later turn that asks nothing: answer at once
            return _final(COURTESY_ANSWER)
        return _inspect_step() if p.question is None else _chunk_step(p.question, limit)
    last = req.last_user
    if _OUT_OF_ITERATIONS_RE.search(last) or req.turn >= MAX_TURNS:
        return _final(_best_answer(p))
    if not last.startswith("REPL output:"):
        # Feedback about a missing code block or a bad FINAL_VAR: finish with what we have.
        return _final(_best_answer(p))
    step, output = p.last_step, p.output
    if step == "inspect":
        question = find_task(output)
        if question is None:
            return _final("I could not find the task in the context.")
        return _chunk_step(question, limit)
    if step in ("chunk-and-query", "chunk-simple"):
        if has_error(output):
            if step == "chunk-and-query" and p.question:
                return _simple_step(p.question, limit, _error_line(output))
            return _final(_best_answer(p))
        cands = parse_candidates(output)
        if cands is not None and not cands:
            if _failed_calls(output) == 0:
                return _final(NO_ANSWER)
            if step == "chunk-and-query" and p.question:
                return _simple_step(p.question, limit, "every answer was a failed sub-call")
            return _final("I could not determine the answer: the sub-calls failed.")
        return _aggregate_step(p.question or "", len(cands) if cands is not None else None)
    if step == "aggregate":
        return _final(_best_answer(p))
    # The conversation did not come from this policy (e.g. a rule answered earlier turns).
    return _chunk_step(p.question, limit) if p.question else _inspect_step()


def _chunk_limit(system: str) -> int:
    m = _WINDOW_RE.search(system)
    if not m:
        return MAX_CHUNK_CHARS
    window = int(m.group(1).replace(",", ""))
    return max(1_000, min(MAX_CHUNK_CHARS, int(window * 0.9)))


def _error_line(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if _ERROR_RE.search(ln)]
    return lines[-1] if lines else "an error"


def _final(answer: str) -> Reply:
    answer = " ".join(answer.split())
    return Reply(text=f"I have the answer.\nFINAL({answer})")


def _code(step: str, body: str, **values: object) -> str:
    code = textwrap.dedent(body).strip("\n")
    for key, value in values.items():
        code = code.replace(
            f"__{key.upper()}__", repr(value) if isinstance(value, str) else str(value)
        )
    return f"```repl\n# step: {step}\n{code}\n```"


_INSPECT = """
print(type(context).__name__)
print(context[:2000] if isinstance(context, str) else repr(context)[:2000])
"""

_CHUNK = """
question = __QUESTION__
print(type(context).__name__, len(context) if hasattr(context, "__len__") else "")
if isinstance(context, str):
    pieces = [context]
elif isinstance(context, dict):
    pieces = [v if isinstance(v, str) else str(v) for v in context.values()]
elif isinstance(context, (list, tuple)):
    pieces = [x if isinstance(x, str) else str(x) for x in context]
else:
    pieces = [str(context)]
limit = __LIMIT__
chunks, current = [], ""
for piece in pieces:
    for line in (piece if piece.endswith("\\n") else piece + "\\n").splitlines(keepends=True):
        while len(line) > limit:  # one over-long line: cut it hard
            if current:
                chunks.append(current)
                current = ""
            chunks.append(line[:limit])
            line = line[limit:]
        if current and len(current) + len(line) > limit:
            chunks.append(current)
            current = ""
        current += line
if current.strip():
    chunks.append(current)
head = __HEAD__
prompts = [head + "\\nQuestion: " + question + "\\n\\nText:\\n" + chunk for chunk in chunks]
answers = llm_query_batched(prompts)
failed = [a for a in answers if a.startswith("Error:")]
candidates = [a.strip() for a in answers if a.strip() != __NOT_FOUND__ and a not in failed]
print(f"chunks: {len(chunks)}")
print(f"failed sub-calls: {len(failed)}")
print(f"candidates: {candidates!r}")
"""

_SIMPLE = """
question = __QUESTION__
text = context if isinstance(context, str) else str(context)
limit = __LIMIT__
chunks = [text[i : i + limit] for i in range(0, len(text), limit)]
head = __HEAD__
answers = [llm_query(head + "\\nQuestion: " + question + "\\n\\nText:\\n" + c) for c in chunks]
failed = [a for a in answers if a.startswith("Error:")]
candidates = [a.strip() for a in answers if a.strip() != __NOT_FOUND__ and a not in failed]
print(f"chunks: {len(chunks)}")
print(f"failed sub-calls: {len(failed)}")
print(f"candidates: {candidates!r}")
"""

_AGGREGATE = """
import json
head = __HEAD__
counting = __COUNTING__  # whether the question asks for a count
final_answer = llm_query(
    head + "\\nQuestion: " + question + "\\n\\nPartial answers (JSON list):\\n" + json.dumps(candidates)
)
if final_answer.startswith("Error:"):  # the sub-call failed: combine in code instead
    if counting:
        final_answer = str(sum(int(c) for c in candidates if c.lstrip("-").isdigit()))
    else:
        final_answer = max(candidates, key=candidates.count)
print(final_answer)
"""


def _inspect_step() -> Reply:
    text = "The task is inside the context, so I will read the beginning of it first.\n" + _code(
        "inspect", _INSPECT
    )
    return Reply(text=text)


def _chunk_step(question: str, limit: int) -> Reply:
    code = _code(
        "chunk-and-query",
        _CHUNK,
        question=question,
        limit=limit,
        head=CHUNK_HEAD,
        not_found=NOT_FOUND,
    )
    thought = (
        f"I will check the type and size of `context`, split it on line boundaries into "
        f"chunks of at most {limit:,} characters, and ask a sub-model about every chunk "
        "in one batch."
    )
    return Reply(text=f"{thought}\n{code}")


def _simple_step(question: str, limit: int, error: str) -> Reply:
    code = _code(
        "chunk-simple",
        _SIMPLE,
        question=question,
        limit=limit,
        head=CHUNK_HEAD,
        not_found=NOT_FOUND,
    )
    thought = f"That failed ({error}). I will retry with plain slicing and one query per chunk."
    return Reply(text=f"{thought}\n{code}")


def _aggregate_step(question: str, n_candidates: int | None) -> Reply:
    found = f"{n_candidates} candidate answers" if n_candidates is not None else "candidates"
    thought = f"The chunks gave {found}. I will combine them with one more sub-call."
    code = _code("aggregate", _AGGREGATE, head=AGGREGATE_HEAD, counting=is_counting(question))
    return Reply(text=f"{thought}\n{code}\nFINAL_VAR(final_answer)")
