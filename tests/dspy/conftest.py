"""DSPy fixtures: ``dspy.LM``s pointed at the scripted server, which speaks DSPy's formats
(every new ScriptedModel does)."""

from __future__ import annotations

from collections.abc import Iterator

import dspy
import pytest

from rlm_engine.scripted import ScriptedModel
from rlm_engine.scripted.server import ScriptedServer


@pytest.fixture
def dspy_model(scripted_model: ScriptedModel) -> ScriptedModel:
    """The model the scripted server serves, for tests that add rules to it."""
    return scripted_model


@pytest.fixture
def root_lm(dspy_model: ScriptedModel, scripted_server: ScriptedServer) -> dspy.LM:
    return dspy.LM(
        "openai/scripted-root", api_base=scripted_server.base_url, api_key="x", cache=False
    )


@pytest.fixture
def sub_lm(dspy_model: ScriptedModel, scripted_server: ScriptedServer) -> dspy.LM:
    return dspy.LM(
        "openai/scripted-sub", api_base=scripted_server.base_url, api_key="x", cache=False
    )


@pytest.fixture
def with_root_lm(root_lm: dspy.LM) -> Iterator[dspy.LM]:
    """The root LM as ``dspy.settings.lm`` for one test, usage tracking on."""
    with dspy.context(lm=root_lm, track_usage=True):
        yield root_lm
