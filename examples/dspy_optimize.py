"""Compile an RLMModule with DSPy's BootstrapFewShot and compare dev scores before and after.

The task: find a vault's access code in a ~40,000-character log. The RLM root never reads
the log; it writes code that splits it and asks a sub-model about the pieces. Bootstrapping
keeps the root turns of training runs that got the answer right and shows them to the root
as demos on later runs.

Demos cost tokens on every call they are sent with, so the example also prints the tokens
per example before and after compiling, as each prediction's ``usage`` reports them. The
demos carry behaviour (the root's code and reasoning, the shape of a sub-call answer), not
material: RLMModule keeps each demo value to ``max_demo_chars`` (1,000 characters), so a
context chunk a sub-call prompt held is not re-sent with every later ``llm_query``, and the
saved program does not contain the training logs.

Uses OpenAI when OPENAI_API_KEY is set (model: RLM_DSPY_MODEL, default openai/gpt-5-mini).
Otherwise it runs offline against the project's scripted model: that model skips part of the
document on about half of the questions unless its prompt shows a demo (or an instruction)
with a map-reduce strategy, so the score changes exactly as far as the prompt changes.

    uv run examples/dspy_optimize.py
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dspy

from rlm_integrations.dspy import RLMModule


class VaultQA(dspy.Signature):
    """Answer the question about the log."""

    log: str = dspy.InputField(desc="a long machine log")
    question: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="the access code, digits only")


WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "system",
    "module",
    "report",
    "review",
    "status",
    "update",
    "metric",
    "vendor",
]


def make_example(vault: int, rng: random.Random) -> dspy.Example:
    """A ~40,000-character log with the vault's code somewhere after its first tenth."""
    code = str(rng.randint(1000, 9999))
    lines = [
        f"Entry {i}: " + " ".join(rng.choice(WORDS) for _ in range(6)) + "." for i in range(900)
    ]
    lines.insert(rng.randrange(100, 880), f"The access code for vault {vault} is {code}.")
    return dspy.Example(
        log="\n".join(lines), question=f"What is the access code for vault {vault}?", answer=code
    ).with_inputs("log", "question")


def make_dataset(seed: int = 3) -> tuple[list[dspy.Example], list[dspy.Example]]:
    rng = random.Random(seed)
    vaults = rng.sample(range(10, 99), 16)
    examples = [make_example(v, rng) for v in vaults]
    return examples[:6], examples[6:]


def exact_match(gold: dspy.Example, pred: dspy.Prediction, trace: object = None) -> bool:
    return str(pred.answer).strip() == gold.answer


@contextlib.contextmanager
def language_model() -> Iterator[tuple[dspy.LM, str]]:
    """A real LM when a key is set, else the scripted model behind a local server."""
    if os.environ.get("OPENAI_API_KEY"):
        model = os.environ.get("RLM_DSPY_MODEL", "openai/gpt-5-mini")
        yield dspy.LM(model), model
        return
    from rlm_engine.scripted.server import ScriptedServer

    with ScriptedServer() as server:  # the scripted model speaks DSPy's formats
        lm = dspy.LM("openai/scripted-root", api_base=server.base_url, api_key="x", cache=False)
        yield lm, "the offline scripted model (set OPENAI_API_KEY for a real one)"


@dataclass
class Cost:
    """Tokens per example, as the predictions' ``usage`` reports them."""

    tokens: float  # all LM calls of one example
    sub_tokens: float  # its sub-calls (llm_query)
    sub_calls: float

    @property
    def per_sub_call(self) -> float:
        return self.sub_tokens / self.sub_calls if self.sub_calls else 0.0

    def __str__(self) -> str:
        return (
            f"{self.tokens:,.0f} tokens per example; sub-calls {self.sub_tokens:,.0f} tokens "
            f"in {self.sub_calls:.1f} calls ({self.per_sub_call:,.0f} per call)"
        )


def evaluate(program: dspy.Module, devset: list[dspy.Example]) -> tuple[float, Cost]:
    result = dspy.Evaluate(
        devset=devset, metric=exact_match, num_threads=2, display_progress=False
    )(program)
    usages = [pred.usage for _, pred, _ in result.results if "usage" in pred]
    n = max(1, len(usages))
    cost = Cost(
        tokens=sum(u["total"]["total_tokens"] for u in usages) / n,
        sub_tokens=sum(u["sub"]["total_tokens"] for u in usages) / n,
        sub_calls=sum(u["sub"]["calls"] for u in usages) / n,
    )
    return float(result.score), cost


def main() -> None:
    trainset, devset = make_dataset()
    started = time.perf_counter()
    with language_model() as (lm, label), dspy.context(lm=lm, track_usage=True):
        print(f"LM: {label}")
        print(
            f"Train {len(trainset)}, dev {len(devset)} examples; each log has "
            f"{len(devset[0].log):,} characters."
        )
        student = RLMModule(VaultQA, max_iterations=8)
        before, cost_before = evaluate(student, devset)
        print(f"Dev score before compiling: {before:.1f}%")
        print(f"Cost before compiling: {cost_before}")

        optimizer = dspy.BootstrapFewShot(
            metric=exact_match, max_bootstrapped_demos=2, max_labeled_demos=0
        )
        compiled = optimizer.compile(student, trainset=trainset)
        print(
            f"Compiled: {len(compiled.root.demos)} root demos, "
            f"{len(compiled.sub_query.demos)} sub-call demos."
        )

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "rlm_vault.json"
            compiled.save(str(path))
            saved = json.loads(path.read_text())
            longest = max(
                (
                    len(str(v))
                    for p in saved.values()
                    for d in p.get("demos", [])
                    for v in d.values()
                ),
                default=0,
            )
            loaded = RLMModule(VaultQA, max_iterations=8)
            loaded.load(str(path))
            print(
                f"Saved and reloaded the compiled program ({path.stat().st_size:,} bytes; "
                f"its longest demo value has {longest:,} characters)."
            )
        after, cost_after = evaluate(loaded, devset)
        print(f"Dev score after compiling:  {after:.1f}%")
        print(f"Cost after compiling:  {cost_after}")
        ratio = cost_after.per_sub_call / max(1.0, cost_before.per_sub_call)
        print(
            f"Each sub-call costs {ratio:.2f}x what it did before compiling (its demos are sent "
            "with it); how many sub-calls an example needs is the root's strategy."
        )

        pred = loaded(**devset[0].inputs())
        usage = pred.usage["total"]
        print(
            f"One compiled run: answer {pred.answer!r} (expected {devset[0].answer!r}), "
            f"{len(pred.trajectory)} turns, {usage['calls']} LM calls, "
            f"{usage['total_tokens']:,} tokens."
        )
    print(f"Total time: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
