"""RLMModule's few-shot demos carry behaviour, not material, whatever optimizer sets them.

A bootstrapped sub-call demo used to hold a whole context chunk, re-sent with every later
``llm_query``; raw training examples put whole documents into saved programs. Demos are
now bounded when set, used and saved (``rlm_integrations.dspy.demos``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dspy
import pytest
from dspy_support import chat_reply, exact_match, is_rlm_turn, score, vault_example

from rlm_engine.scripted import Request
from rlm_integrations.dspy import RLMModule
from rlm_integrations.dspy.demos import (
    DEFAULT_MAX_DEMO_CHARS,
    bound_demo,
    bound_demos,
    clip_value,
)
from rlm_integrations.dspy.signatures import sub_signature

BOUND = DEFAULT_MAX_DEMO_CHARS


class VaultQA(dspy.Signature):
    """Answer the question about the document."""

    document: str = dspy.InputField()
    question: str = dspy.InputField()
    answer: str = dspy.OutputField()


# Uncompiled, the scripted root runs map-reduce on these (even vaults) and on the training
# set's successes, so the sub-calls before and after compiling are the same calls.
COST = [vault_example(n) for n in (2, 4)]
TRAIN = [vault_example(n) for n in range(6, 12)]
DEV = [vault_example(n) for n in (6, 7, 8, 9)]


def demo_values(program: dspy.Module) -> Iterator[tuple[str, str, Any]]:
    for name, predictor in program.named_predictors():
        for demo in predictor.demos:
            for key, value in demo.items():
                yield name, key, value


def assert_bounded(program: dspy.Module) -> None:
    for name, key, value in demo_values(program):
        text = value if isinstance(value, str) else json.dumps(value)
        assert len(text) <= BOUND, f"{name} demo field {key!r} holds {len(text):,} characters"
        assert key not in ("document", "question"), f"{name} demo holds the task field {key!r}"


def sub_tokens(program: dspy.Module, examples: list[dspy.Example]) -> list[int]:
    """Tokens of each example's sub-calls, as the prediction's usage reports them."""
    return [program(**ex.inputs()).usage["sub"]["total_tokens"] for ex in examples]


def saved_strings(program: dspy.Module, path: Path) -> list[str]:
    program.save(str(path))
    out: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, str):
            out.append(x)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(json.loads(path.read_text()))
    return out


def holds_a_document(strings: list[str], examples: list[dspy.Example]) -> bool:
    """True when a saved string holds ten consecutive lines of any example's document."""
    pieces = ["\n".join(ex.document.splitlines()[300:310]) for ex in examples]
    return any(piece in s for piece in pieces for s in strings)


@pytest.fixture
def student(root_lm: dspy.LM) -> Iterator[RLMModule]:
    with dspy.context(lm=root_lm):
        # One sub-call at a time: the trace order, and so the demos bootstrapping keeps, is
        # the same on every run (with the scripted model: context chunks).
        yield RLMModule(VaultQA, max_concurrency=1)


def test_bootstrapped_demos_keep_context_chunks_out_of_sub_calls_and_saved_programs(
    student, tmp_path
):
    before = sub_tokens(student, COST)
    optimizer = dspy.BootstrapFewShot(
        metric=exact_match, max_bootstrapped_demos=3, max_labeled_demos=4
    )
    compiled = optimizer.compile(student, trainset=TRAIN)
    assert len(compiled.root.demos) == 3 and compiled.sub_query.demos
    assert_bounded(compiled)
    assert any("left out of this demo" in d["prompt"] for d in compiled.sub_query.demos)

    # Three bounded demos ride along with every sub-call: at most a few hundred tokens each
    # (whole chunks made it x4.3 here: 12,678 -> 54,672).
    after = sub_tokens(compiled, COST)
    for b, a in zip(before, after, strict=True):
        assert a <= 2 * b, f"sub-call tokens per example went from {b:,} to {a:,}"
    assert score(compiled, DEV) == 1.0  # the demos still carry the behaviour

    strings = saved_strings(compiled, tmp_path / "compiled.json")
    assert not holds_a_document(strings, TRAIN + DEV)
    loaded = RLMModule(VaultQA)
    loaded.load(str(tmp_path / "compiled.json"))
    assert [d["code"] for d in loaded.root.demos] == [d["code"] for d in compiled.root.demos]


def test_miprov2_raw_training_examples_do_not_become_demos(student, tmp_path):
    optimizer = dspy.MIPROv2(metric=exact_match, auto="light", num_threads=1, verbose=False)
    compiled = optimizer.compile(student, trainset=TRAIN[:4], valset=DEV)
    assert_bounded(compiled)
    assert not holds_a_document(saved_strings(compiled, tmp_path / "p.json"), TRAIN + DEV)
    assert score(compiled, DEV) == 1.0


def test_demos_added_in_place_are_bounded_when_used_and_saved(dspy_model, with_root_lm):
    """SIMBA appends to ``predictor.demos``; old saved programs hold whole documents."""
    seen: list[Request] = []

    def sub_reply(req: Request) -> str:
        seen.append(req)
        return chat_reply(response="17")

    dspy_model.add_rule(
        is_rlm_turn,
        chat_reply(reasoning="Ask.", code="SUBMIT(answer=llm_query('What is 17?'))"),
        times=1,
    )
    dspy_model.add_rule(lambda r: r.last_user.startswith("[[ ## prompt ## ]]"), sub_reply)
    rlm = RLMModule(VaultQA)
    chunk = "C" * 50_000
    rlm.sub_query.demos.append(dspy.Example(augmented=True, prompt=chunk, response="42"))
    assert rlm(document="short", question="q").answer == "17"
    sent = "\n".join(m["content"] for m in seen[0].messages)
    assert "C" * BOUND not in sent and "C" * 100 in sent
    assert "characters left out of this demo" in sent
    assert len(rlm.dump_state()["sub_query"]["demos"][0]["prompt"]) <= BOUND


def test_loading_a_program_with_whole_documents_in_its_demos_bounds_them(tmp_path):
    path = tmp_path / "old.json"
    RLMModule(VaultQA).save(str(path))
    state = json.loads(path.read_text())
    doc = vault_example(3).document
    state["root"]["demos"] = [
        {"document": doc, "question": "q", "answer": "1"},  # a raw training example
        {
            "augmented": True,
            "variables_info": doc,
            "repl_history": "none",
            "iteration": "1/30",
            "reasoning": "r",
            "code": "print(1)",
        },
    ]
    path.write_text(json.dumps(state))
    loaded = RLMModule(VaultQA)
    loaded.load(str(path))
    assert len(loaded.root.demos) == 1
    assert loaded.root.demos[0]["code"] == "print(1)"
    assert_bounded(loaded)


def test_bound_rules():
    text = "".join(f"{i:05d}" for i in range(2_000))  # 10,000 distinct characters
    clipped = clip_value(text, 300)
    assert len(clipped) <= 300
    head, marker, tail = clipped.split("\n")
    assert text.startswith(head) and text.endswith(tail)
    assert len(head) == (len(head) + len(tail)) * 2 // 3  # two thirds before the cut
    left_out = int(marker.removeprefix("[... ").split(" ")[0].replace(",", ""))
    assert len(head) + left_out + len(tail) == len(text)  # the marker counts what is gone
    assert clip_value("short", 300) == "short"

    sig = sub_signature()
    demo = dspy.Example(augmented=True, prompt=text, response="x", document=text)
    kept = bound_demo(demo, sig, 300)
    assert kept is not None and set(kept.keys()) == {"augmented", "prompt", "response"}
    assert bound_demo(kept, sig, 300) == kept  # bounding is idempotent
    assert bound_demo({"document": text, "response": "x"}, sig, 300) is None  # no input
    assert bound_demos([{"prompt": "p", "response": "r"}], sig, 300) == [
        {"prompt": "p", "response": "r"}
    ]
    assert demo["prompt"] == text  # the original is not changed
    with pytest.raises(ValueError, match="at least"):
        RLMModule(VaultQA, max_demo_chars=10)
    with pytest.raises(TypeError, match="dspy.Example or a dict"):
        bound_demos(["not a demo"], sig, 300)
