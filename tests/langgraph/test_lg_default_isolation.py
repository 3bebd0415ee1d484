"""A default ``build_rlm_graph`` runs model-written code outside the host process: the code
cannot read a secret the host process holds in its environment."""

from __future__ import annotations

from typing import Any

import pytest

from rlm_integrations.langgraph import build_rlm_graph

SECRET_VAR = "RLM_PROOF_SECRET"
READ_SECRET = f"```repl\nimport os\nFINAL('secret=' + repr(os.environ.get({SECRET_VAR!r})))\n```"


def test_default_graph_code_cannot_read_the_hosts_secret(
    monkeypatch: pytest.MonkeyPatch, scripted_model: Any, openai_kwargs: dict
) -> None:
    monkeypatch.setenv(SECRET_VAR, "s3cr3t-only-the-host-knows")
    scripted_model.add_rule(lambda r: r.is_rlm_root, READ_SECRET)
    graph = build_rlm_graph(backend="openai", backend_kwargs=openai_kwargs)
    assert graph.rlm_config.repl.environment == "auto"
    out = graph.compile().invoke({"context": "a document", "query": "What is the secret?"})
    assert out["status"] == "final" and out["final_answer"] == "secret=None"
