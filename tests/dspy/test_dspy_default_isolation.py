"""A default ``RLMModule`` runs model-written code outside the host process: the code cannot
read a secret the host process holds in its environment."""

from __future__ import annotations

from typing import Any

import pytest
from dspy_support import chat_reply, is_rlm_turn

from rlm_integrations.dspy import RLMModule

SECRET_VAR = "RLM_PROOF_SECRET"


def test_default_module_code_cannot_read_the_hosts_secret(
    monkeypatch: pytest.MonkeyPatch, dspy_model: Any, with_root_lm: Any
) -> None:
    monkeypatch.setenv(SECRET_VAR, "s3cr3t-only-the-host-knows")
    code = f"import os\nSUBMIT(answer='secret=' + repr(os.environ.get({SECRET_VAR!r})))"
    dspy_model.add_rule(is_rlm_turn, chat_reply(reasoning="Read it.", code=code))
    module = RLMModule("document -> answer")
    assert module.config.repl.environment == "auto"
    assert module(document="a document").answer == "secret=None"
