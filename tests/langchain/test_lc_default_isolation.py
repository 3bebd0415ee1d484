"""A default ``RLMChatModel`` runs model-written code outside the host process: the code
cannot read a secret the host process holds in its environment."""

from __future__ import annotations

from typing import Any

import pytest

from rlm_integrations.langchain import RLMChatModel

SECRET_VAR = "RLM_PROOF_SECRET"
READ_SECRET = f"```repl\nimport os\nFINAL('secret=' + repr(os.environ.get({SECRET_VAR!r})))\n```"


def test_default_chat_model_code_cannot_read_the_hosts_secret(
    monkeypatch: pytest.MonkeyPatch, scripted_model: Any, scripted_server: Any
) -> None:
    monkeypatch.setenv(SECRET_VAR, "s3cr3t-only-the-host-knows")
    scripted_model.add_rule(lambda r: r.is_rlm_root, READ_SECRET)
    llm = RLMChatModel(model="scripted-root", base_url=scripted_server.base_url, api_key="sk-x")
    assert llm.engine_config().repl.environment == "auto"
    assert llm.invoke("What is the secret?", context="a document").content == "secret=None"
