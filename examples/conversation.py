"""A conversation with an RLM: three questions about one document, one REPL throughout.

Turn 1 reads a generated log of ~5,000 shipments region by region (one sub-call per
region) and keeps the counts in a variable; turn 2 answers from that variable without
reading the document again; turn 3 is a follow-up that needs no material at all. Each
turn prints what it cost, so the difference shows.

    uv run examples/conversation.py

Uses a real model when OPENAI_API_KEY, ANTHROPIC_API_KEY or RLM_API_URL is set (model:
RLM_MODEL). Otherwise it runs offline on the package's scripted model, whose root replies
for these three questions are written out below (what a capable model would write): the
REPL, the sub-calls and the accounting are real either way.
"""

from __future__ import annotations

import os
import random
import re
import sys

from rlm_engine import RLM, RLMResult
from rlm_engine.scripted import ScriptedModel
from rlm_engine.scripted.policy import query_text
from rlm_engine.scripted.reader import CHUNK_HEAD

REGIONS = ["North", "South", "East", "West", "Central", "Coastal"]
QUESTIONS = [
    "How many delayed shipments did each region report?",
    "Which region had the most delayed shipments, and what share of all delays is that?",
    "Thanks! Put that in one sentence for the weekly status report.",
]


def make_document(seed: int = 11, lines: int = 5_000) -> tuple[str, dict[str, int]]:
    """A shipment log; returns it and the delayed shipments per region."""
    rng = random.Random(seed)
    weights = {r: rng.uniform(0.03, 0.12) for r in REGIONS}
    delayed = dict.fromkeys(REGIONS, 0)
    rows = []
    for i in range(lines):
        region = rng.choice(REGIONS)
        late = rng.random() < weights[region]
        delayed[region] += late
        status = (
            f"delayed shipment ({rng.choice(['weather', 'customs', 'carrier'])})"
            if late
            else "on time"
        )
        rows.append(
            f"2025-{1 + i % 12:02d}-{1 + i % 28:02d} | region={region} | order {10_000 + i} | {status}"
        )
    return "\n".join(rows), delayed


# -- offline: the scripted root's replies to these three questions --------------------------
TURN_1 = f"""I will split the log by region and ask a sub-model to count each region's delays.
```repl
lines = context.splitlines()
regions = sorted({{line.split("region=")[1].split(" |")[0] for line in lines}})
by_region = {{r: "\\n".join(l for l in lines if f"region={{r}} |" in l) for r in regions}}
question = "How many lines contain 'delayed shipment'?"
answers = llm_query_batched([
    {CHUNK_HEAD!r} + "\\nQuestion: " + question + "\\n\\nText:\\n" + text
    for text in by_region.values()
])
delayed = {{r: int(a) for r, a in zip(regions, answers)}}
summary = ", ".join(f"{{r}}: {{n}}" for r, n in delayed.items())
print(summary)
```"""
TURN_2 = """`delayed` from the last turn has the counts; no need to read the log again.
```repl
worst = max(delayed, key=delayed.get)
total = sum(delayed.values())
answer = f"{worst}: {delayed[worst]} of {total} delayed shipments ({delayed[worst] / total:.0%})"
print(answer)
```"""


def thanks_reply(request) -> str:
    """Turn 3 answers from the digest of turn 2, which every later turn's prompt carries."""
    m = re.search(
        r"^2\. Query: .*\n\s+Answer: (.+?)(?: Variables it made: .*)?$", request.first_user, re.M
    )
    said = m.group(1) if m else "see the previous answer"
    return f"FINAL(Weekly status: the region with the most delayed shipments was {said}.)"


def scripted_model() -> ScriptedModel:
    model = ScriptedModel()

    def asks(text: str):
        return lambda r: r.is_rlm_root and text in query_text(r.first_user)

    model.add_rule(asks(QUESTIONS[0]), lambda r: "FINAL_VAR(summary)" if r.turn else TURN_1)
    model.add_rule(asks(QUESTIONS[1]), lambda r: "FINAL_VAR(answer)" if r.turn else TURN_2)
    model.add_rule(asks(QUESTIONS[2]), thanks_reply)
    return model


def make_rlm() -> tuple[RLM, str]:
    model = os.environ.get("RLM_MODEL")
    if os.environ.get("RLM_API_URL"):
        return RLM(backend="openai", model=model or "auto"), "the server at RLM_API_URL"
    if os.environ.get("OPENAI_API_KEY"):
        return RLM(backend="openai", model=model or "gpt-5-mini"), "OpenAI"
    if os.environ.get("ANTHROPIC_API_KEY"):
        return RLM(backend="anthropic", model=model or "claude-sonnet-4-5"), "Anthropic"
    rlm = RLM(backend="scripted", backend_kwargs={"model": scripted_model()})
    return rlm, "the built-in offline scripted model (set OPENAI_API_KEY for a real one)"


def show(number: int, question: str, res: RLMResult) -> None:
    u = res.usage
    cost = f", ${u.total.cost:.4f}" if u.total.cost is not None else ""
    print(f"\nTurn {number}: {question}\n  {res.answer}")
    print(
        f"  {len(res.iterations)} iteration(s), {u.root.calls} root + {u.sub.calls} sub-calls, "
        f"{u.total.total_tokens:,} tokens ({u.total.cached_input_tokens:,} cached){cost}"
    )


def main() -> int:
    document, delayed = make_document()
    rlm, label = make_rlm()
    worst = max(delayed, key=lambda r: delayed[r])
    print(f"Backend: {label}")
    print(f"Context: {len(document):,} characters of shipment log; the root sees a preview.")
    with rlm.conversation(document) as conv:
        results = []
        for number, question in enumerate(QUESTIONS, 1):
            results.append(conv.send(question))
            show(number, question, results[-1])
    one, two, three = (r.answer or "" for r in results)
    checks = {
        "turn 1 has every region's count": all(f"{r}: {n}" in one for r, n in delayed.items())
        or all(str(n) in one for n in delayed.values()),
        f"turn 2 names {worst}": worst in two,
        f"turn 3 names {worst}": worst in three,
    }
    if label.startswith("the built-in"):  # the scripted root is deterministic: so are costs
        checks["turn 2 made no sub-call"] = results[1].usage.sub.calls == 0
        checks["turn 3 was one root call"] = results[2].usage.total.calls == 1
    print()
    for check, ok in checks.items():
        print(f"{'ok   ' if ok else 'WRONG'} {check}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
