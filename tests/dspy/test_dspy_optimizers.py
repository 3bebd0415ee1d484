"""DSPy optimizers on RLMModule, offline: each one changes what the root LM is prompted with.

The scripted root LM (``rlm_engine.scripted.skills.dspy``) takes a shortcut on half
of the questions (it reads only the start of the document, and the answer is on line 600)
unless its prompt asks for a map-reduce strategy or shows a demo that uses one. So the dev
score moves only if an optimizer really changed the prompt: demos (BootstrapFewShot) or
instructions (COPRO, MIPROv2, GEPA).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dspy
import pytest
from dspy_support import exact_match, score, vault_example

from rlm_engine.scripted.skills.dspy import HINT, STRATEGY_MARK
from rlm_integrations.dspy import RLMModule


class VaultQA(dspy.Signature):
    """Answer the question about the document."""

    document: str = dspy.InputField()
    question: str = dspy.InputField()
    answer: str = dspy.OutputField()


TRAIN = [vault_example(n) for n in (2, 3, 4, 5)]
DEV = [vault_example(n) for n in (6, 7, 8, 9)]
HARD = [vault_example(n) for n in (3, 5, 11)]  # the unoptimized root takes the shortcut here


@pytest.fixture
def student(root_lm):
    with dspy.context(lm=root_lm):
        module = RLMModule(VaultQA)
        assert score(module, DEV) == 0.5
        yield module


def test_bootstrap_few_shot_adds_demos_that_survive_save_and_load(student, tmp_path):
    optimizer = dspy.BootstrapFewShot(
        metric=exact_match, max_bootstrapped_demos=2, max_labeled_demos=0
    )
    compiled = optimizer.compile(student, trainset=TRAIN)
    demos = compiled.root.demos
    assert len(demos) == 2
    assert all(STRATEGY_MARK in d["code"] and d["variables_info"] for d in demos)
    assert compiled.sub_query.demos  # the sub-call template got demos too
    assert student.root.demos == []
    assert score(compiled, DEV) == 1.0

    path = tmp_path / "compiled.json"
    compiled.save(str(path))
    loaded = RLMModule(VaultQA)
    loaded.load(str(path))
    assert [d["code"] for d in loaded.root.demos] == [d["code"] for d in demos]
    assert score(loaded, DEV) == 1.0


def test_copro_rewrites_the_root_instructions(student):
    optimizer = dspy.COPRO(metric=exact_match, breadth=2, depth=1, init_temperature=1.0)
    compiled = optimizer.compile(
        student, trainset=DEV, eval_kwargs={"num_threads": 1, "display_progress": False}
    )
    assert compiled.root.signature.instructions != student.root.signature.instructions
    assert HINT in compiled.root.signature.instructions
    assert score(compiled, DEV) == 1.0


def test_miprov2_light_picks_better_root_instructions(student):
    optimizer = dspy.MIPROv2(
        metric=exact_match,
        auto="light",
        num_threads=1,
        max_bootstrapped_demos=0,
        max_labeled_demos=0,
        verbose=False,
    )
    compiled = optimizer.compile(student, trainset=TRAIN, valset=DEV)
    assert compiled.root.signature.instructions != student.root.signature.instructions
    assert HINT in compiled.root.signature.instructions
    assert score(compiled, DEV) == 1.0


def test_gepa_reflects_on_failures_and_evolves_the_root_instructions(student, root_lm):
    optimizer = dspy.GEPA(
        metric=exact_match,
        reflection_lm=root_lm,
        max_metric_calls=24,
        num_threads=1,
        reflection_minibatch_size=2,
    )
    compiled = optimizer.compile(student, trainset=HARD, valset=DEV)
    assert compiled.root.signature.instructions != student.root.signature.instructions
    assert HINT in compiled.root.signature.instructions
    assert score(compiled, DEV) == 1.0


def test_the_optimization_example_runs_offline():
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    out = subprocess.run(
        [sys.executable, str(root / "examples" / "dspy_optimize.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=True,
    ).stdout
    assert "Dev score before compiling: 50.0%" in out
    assert "Dev score after compiling:  100.0%" in out
    assert "Compiled: 2 root demos" in out
    assert "Cost before compiling:" in out and "Cost after compiling:" in out
