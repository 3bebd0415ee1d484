"""The scripted sub-model: answers questions about a chunk of text by keyword matching.

Task kinds it can do, for the chunk prompt (``chunk_prompt``):

- needle lookups ("What is the secret code?", "What is the magic number for Paris?",
  "Who founded Acme?"): the statement sentence sharing the most question keywords
  (stop-words removed, case-insensitive, plural-tolerant), answered with the text after
  " is " / " was " / ": " (or before it, for "X is the founder"-style sentences);
- counting ("How many times does the word 'x' appear?", "How many lines contain X?",
  "How many occurrences of X ...?"): the count in the chunk, as a number;
- anything else, or no sentence with enough keywords: ``NOT FOUND``.

For the aggregate prompt (``aggregate_prompt``): counting questions sum the partial
numbers, other questions return the most frequent candidate (the first one on ties).
Any other prompt: simple arithmetic ("What is 2+3?") is computed; the rest gets a
deterministic ``Scripted answer: ...``.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
from collections import Counter
from collections.abc import Callable

NOT_FOUND = "NOT FOUND"
CHUNK_HEAD = (
    "Answer the question using only the text below. "
    "If the text does not contain the answer, reply exactly NOT FOUND."
)
AGGREGATE_HEAD = (
    "Combine the partial answers below into one final answer to the question. "
    "Reply with the answer only."
)
_CHUNK_RE = re.compile(
    re.escape(CHUNK_HEAD) + r"\nQuestion: (?P<q>.*?)\n\nText:\n(?P<text>.*)", re.S
)
_AGGREGATE_RE = re.compile(
    re.escape(AGGREGATE_HEAD)
    + r"\nQuestion: (?P<q>.*?)\n\nPartial answers \(JSON list\):\n(?P<c>.*)",
    re.S,
)

_STOP_WORDS_TEXT = """
a an the is are was were be been being am do does did doing have has had of for in on at to
from by with about as into onto and or but not no nor so than then that this these those it
its it's there their they them what who whom whose which when where why how i me my we our
you your he him his she her please tell give find state say says said according text
document passage context mentioned stated name called given following any some all one can
could would should will shall may might must also only just
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())


def chunk_prompt(question: str, chunk: str) -> str:
    """The prompt the scripted root sends for one chunk (the sub-model recognizes it)."""
    return f"{CHUNK_HEAD}\nQuestion: {question}\n\nText:\n{chunk}"


def aggregate_prompt(question: str, candidates: list[str]) -> str:
    """The prompt that combines per-chunk answers into one."""
    return f"{AGGREGATE_HEAD}\nQuestion: {question}\n\nPartial answers (JSON list):\n{json.dumps(candidates)}"


def answer_prompt(prompt: str) -> str:
    """The scripted sub-model's answer to any prompt."""
    m = _CHUNK_RE.match(prompt.strip())
    if m:
        return answer_from_text(m["q"].strip(), m["text"])
    m = _AGGREGATE_RE.match(prompt.strip())
    if m:
        try:
            candidates = json.loads(m["c"].strip())
        except json.JSONDecodeError:
            candidates = [line.lstrip("- ").strip() for line in m["c"].splitlines()]
        return combine_answers(m["q"].strip(), [str(c) for c in candidates if str(c).strip()])
    value = arithmetic(prompt)
    if value is None:  # "You are a calculator.\nWhat is 6 * 7?"
        value = arithmetic(extract_question(prompt) or "")
    if value is not None:
        return value
    return "Scripted answer: " + " ".join(prompt.split())[:60]


# --- chunk answers -------------------------------------------------------------------


def answer_from_text(question: str, text: str) -> str:
    """Answer ``question`` from ``text`` alone, or ``NOT FOUND``."""
    count = count_answer(question, text)
    if count is not None:
        return str(count)
    return find_statement(question, text) or NOT_FOUND


def keywords(question: str) -> list[str]:
    """Content words of a question, lower-cased, without stop-words, in order."""
    seen: list[str] = []
    for tok in _tokens(question):
        if tok not in STOP_WORDS and tok not in seen:
            seen.append(tok)
    return seen


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:[-'][a-z0-9]+)*", text.lower())


def _stem(word: str) -> str:
    for suffix in ("ies", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def sentences(text: str) -> list[str]:
    """Sentences of ``text``: split on line breaks and on . ! ? followed by a space."""
    out: list[str] = []
    for line in text.splitlines():
        out.extend(s.strip() for s in re.split(r"(?<=[.!?])\s+", line) if s.strip())
    return out


# How a question or a task opens; used to tell it from the instructions around it.
_ASKING_RE = re.compile(
    r"(?:what|who|whom|whose|which|when|where|why|how|find|count|list|name|identify|"
    r"locate|extract|determine|compute|calculate|summari[sz]e)\b",
    re.I,
)
_LEAD_IN_RE = re.compile(r"[:;]\s+")


def extract_question(text: str) -> str | None:
    """The question ``text`` asks, wherever it sits among instructions and pleasantries.

    A request often wraps its question ("You are terse.\\nRead the log and answer: what is
    X? Thanks."); the keyword reader needs the question alone, or the instructions' words
    outweigh it. The question is the last sentence ending in "?", else the last sentence
    that opens like a question or a task ("Find ...", "How many ..."), else the last
    line. A lead-in before ":" or ";" is dropped when what follows opens like a question
    ("Question: ...", "... and answer: what is X?"). None for blank text.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return None
    said = sentences(text)
    asked = [s for s in said if s.endswith("?")]
    tasks = [s for s in said if _ASKING_RE.match(_drop_lead_in(s))]
    return _drop_lead_in(asked[-1] if asked else tasks[-1] if tasks else lines[-1])


def _drop_lead_in(sentence: str) -> str:
    for m in _LEAD_IN_RE.finditer(sentence):
        rest = sentence[m.end() :].strip()
        if _ASKING_RE.match(rest):
            return rest
    return sentence


_MARKER_RE = re.compile(r"\s(?:is|was|are|were)\s|:\s|\s=\s", re.I)


def find_statement(question: str, text: str) -> str | None:
    """The answer stated in the sentence that best matches the question's keywords."""
    kws = keywords(question)
    if not kws:
        return None
    stems = {_stem(k) for k in kws}
    need = len(stems) if len(stems) <= 2 else math.ceil(2 * len(stems) / 3)
    best: tuple[int, str] | None = None
    question_norm = " ".join(question.lower().split())
    for sentence in sentences(text):
        if sentence.endswith("?") or " ".join(sentence.lower().split()) == question_norm:
            continue  # a question (maybe the task itself) states no answer
        score = len(stems & {_stem(t) for t in _tokens(sentence)})
        if score < need or (best is not None and score <= best[0]):
            continue
        answer = _extract(sentence, stems)
        if answer:
            best = (score, answer)
    return best[1] if best else None


def _extract(sentence: str, stems: set[str]) -> str | None:
    """Text after the first " is "/" was "/": " that follows the keywords, else before one."""
    last_kw_end = 0
    for m in re.finditer(r"[A-Za-z0-9]+(?:[-'][A-Za-z0-9]+)*", sentence):
        if _stem(m.group().lower()) in stems:
            last_kw_end = m.end()
    markers = list(_MARKER_RE.finditer(sentence))
    if not markers:
        return None
    after = [m for m in markers if m.start() >= last_kw_end]
    raw = sentence[after[0].end() :] if after else sentence[: markers[0].start()]
    return _clean_answer(raw) or None


_QUOTES = "\"'`“”‘’"


def _clean_answer(raw: str) -> str:
    """Strip sentence punctuation, quotes and the brackets of a ``str(dict)`` record."""
    answer = raw.strip()
    while True:
        before = answer
        answer = answer.rstrip(".,;:!" + _QUOTES).strip()
        for close, open_ in (("}", "{"), ("]", "["), (")", "(")):
            if answer.endswith(close) and answer.count(open_) < answer.count(close):
                answer = answer[:-1].strip()
        answer = answer.lstrip(_QUOTES).strip()
        if answer == before:
            return answer


_COUNT_WORD_RES = [
    re.compile(
        r"how many times (?:does|do|is|are|did) (?:the )?(?:word |term |phrase |name |string )?"
        r"(?P<term>.+?) (?:appear|occur|show up|get mentioned|mentioned|used|written)",
        re.I,
    ),
    re.compile(
        r"how many (?:occurrences|mentions|instances) of (?:the )?(?:word |term |phrase |name )?"
        r"(?P<term>.+?)(?: are there| appear| occur| in the| exist|\s*\?|$)",
        re.I,
    ),
]
_COUNT_UNIT_RE = re.compile(
    r"how many (?P<unit>lines|rows|entries|records|items|sentences|paragraphs)\b(?: [\w' -]*?)?"
    r" (?:contain|contains|containing|mention|mentions|mentioning|include|includes|including|have|with)"
    r" (?:the )?(?:word |term |phrase |name |string )?(?P<term>.+?)\s*\??$",
    re.I,
)


def _clean_term(term: str) -> str:
    return term.strip().strip("\"'`“”‘’").strip()


def count_answer(question: str, text: str) -> int | None:
    """The count a counting question asks for, measured in ``text``; None if not counting."""
    q = question.strip()
    m = _COUNT_UNIT_RE.search(q)
    if m:
        term = _clean_term(m["term"]).lower()
        unit = m["unit"].lower()
        if unit == "sentences":
            parts = sentences(text)
        elif unit == "paragraphs":
            parts = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
        else:
            parts = text.splitlines()
        return sum(1 for p in parts if term in p.lower())
    for regex in _COUNT_WORD_RES:
        m = regex.search(q)
        if m:
            term = _clean_term(m["term"])
            pattern = rf"(?<!\w){re.escape(term)}(?!\w)"
            return len(re.findall(pattern, text, re.I))
    return None


def is_counting(question: str) -> bool:
    return count_answer(question, "") is not None


# --- combining -----------------------------------------------------------------------


def combine_answers(question: str, candidates: list[str]) -> str:
    """One answer from per-chunk answers: a sum for counts, else the most frequent one."""
    candidates = [
        c.strip()
        for c in candidates
        if c.strip() and c.strip() != NOT_FOUND and not c.startswith("Error:")
    ]
    if not candidates:
        return NOT_FOUND
    if is_counting(question):
        numbers = [re.search(r"-?\d+", c) for c in candidates]
        return str(sum(int(n.group()) for n in numbers if n))
    counts = Counter(c.casefold() for c in candidates)
    top = max(counts.values())
    return next(c for c in candidates if counts[c.casefold()] == top)


# --- arithmetic ----------------------------------------------------------------------

_ARITH_PREFIX = re.compile(
    r"^\s*(?:what(?:'s| is)|compute|calculate|evaluate|solve)?\s*:?\s*(?P<expr>.*?)\s*[=?.]*\s*$",
    re.I | re.S,
)
_BIN_OPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def arithmetic(prompt: str) -> str | None:
    """The value of a simple arithmetic prompt ("2+3", "What is 6 * 7?"), else None."""
    m = _ARITH_PREFIX.match(prompt)
    expr = (m["expr"] if m else prompt).replace("×", "*").replace("÷", "/").replace("^", "**")
    if not re.fullmatch(r"[\d\s.+\-*/()%]+", expr) or not re.search(r"\d\s*[-+*/%]", expr):
        return None
    try:
        value = _eval(ast.parse(expr, mode="eval").body)
    except (SyntaxError, ZeroDivisionError, OverflowError, ValueError):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        v = _eval(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN_OPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large")
        return _BIN_OPS[type(node.op)](left, right)
    raise ValueError("not arithmetic")
