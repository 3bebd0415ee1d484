"""The engine's client registry: names and adapters registered from outside the engine.

The engine names no integration: ``rlm_integrations.langchain`` registers its client when
imported, or through the ``rlm_engine.clients`` entry point that ``make_client`` loads the
first time it meets a name or object nothing registered knows.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from rlm_engine import clients
from rlm_engine.clients import (
    LMClient,
    make_client,
    register_adapter,
    register_backend,
)
from rlm_engine.clients.scripted import ScriptedClient
from rlm_engine.types import LMResponse, Message

ROOT = Path(__file__).resolve().parents[1]


def run_fresh(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a new interpreter, so nothing this test session imported is loaded."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def registry() -> Iterator[None]:
    """Undo whatever a test registers."""
    backends, adapters = dict(clients.BACKENDS), dict(clients.ADAPTERS)
    try:
        yield
    finally:
        clients.BACKENDS.clear()
        clients.BACKENDS.update(backends)
        clients.ADAPTERS.clear()
        clients.ADAPTERS.update(adapters)


class EchoClient(LMClient):
    """Answers every call with a fixed text."""

    def __init__(self, reply: str = "echo", model_name: str = "echo-model") -> None:
        self.reply = reply
        self.model_name = model_name

    async def acomplete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        return LMResponse(text=self.reply, model=model or self.model_name)


class ForeignModel:
    """A model object of some other library."""

    def __init__(self, text: str) -> None:
        self.text = text


# -- the engine names no integration --------------------------------------------------------


def test_engine_imports_no_integration() -> None:
    """``rlm_engine`` depends on no integration nor on the frameworks they adapt."""
    foreign = ("rlm_integrations", "langchain", "langchain_core", "langgraph", "dspy")
    offenders = []
    for path in sorted((ROOT / "rlm_engine").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in foreign
            ]
    assert not offenders, offenders
    source = (ROOT / "rlm_engine" / "clients" / "__init__.py").read_text(encoding="utf-8")
    assert "rlm_integrations" not in source and "langchain" not in source.lower()


def test_langchain_entry_point_is_declared() -> None:
    eps = {ep.name: ep.value for ep in metadata.entry_points(group=clients.ENTRY_POINT_GROUP)}
    assert eps.get("langchain") == "rlm_integrations.langchain.client:register", (
        "the langchain entry point is missing from the installed metadata: run `uv sync`"
    )


# -- a LangChain chat model as backend, in an interpreter that never imported the integration


def test_chat_model_is_a_backend_without_importing_the_integration() -> None:
    proc = run_fresh(
        """
        import sys
        from langchain_core.language_models import FakeListChatModel
        from rlm_engine.clients import make_client
        from rlm_engine.rlm import RLM

        assert not [m for m in sys.modules if m.startswith("rlm_integrations")]
        client = make_client(FakeListChatModel(responses=["hi"]))
        assert type(client).__name__ == "LangChainClient", type(client)
        assert client.complete([{"role": "user", "content": "x"}]).text == "hi"

        replies = ["```repl\\nx = 6 * 7\\nprint(x)\\n```", "FINAL(42)"]
        rlm = RLM(backend=FakeListChatModel(responses=replies), max_iterations=4)
        res = rlm.completion("some context", "What is 6 * 7?")
        assert (res.status, res.response) == ("final", "42"), (res.status, res.response)
        # Loaded by the engine through the entry point, never imported by this script.
        assert "rlm_integrations.langchain.client" in sys.modules
        print("ok")
        """
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_missing_extra_is_named_in_the_error() -> None:
    """Without langchain-core the entry point cannot load: the error says what to install."""
    proc = run_fresh(
        """
        import sys
        sys.modules["langchain_core"] = None  # as if `rlm-integrations[langchain]` was not installed
        from rlm_engine.clients import make_client

        try:
            make_client(object())
        except TypeError as e:
            print(e)
        """
    )
    assert proc.returncode == 0, proc.stderr
    message = proc.stdout
    assert (
        "backend must be a backend name (openai, anthropic, scripted, vllm, llamacpp, azure, openrouter, portkey, gemini, litellm) or an LMClient"
        in message
    )
    assert "install `rlm-integrations[langchain]`" in message


# -- errors ------------------------------------------------------------------------------------


def test_unknown_object_says_what_is_accepted() -> None:
    import rlm_integrations.langchain  # noqa: F401 - registers its adapter

    with pytest.raises(TypeError) as err:
        make_client(ForeignModel("x"))
    message = str(err.value)
    assert (
        "a backend name (openai, anthropic, scripted, vllm, llamacpp, azure, openrouter, portkey, gemini, litellm, langchain)"
        in message
    )
    assert "an LMClient" in message and "a LangChain chat model" in message
    assert "ForeignModel" in message
    assert "register_adapter" in message


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"Unknown backend 'no-such-backend'\. Choose one of: "):
        make_client("no-such-backend")
    with pytest.raises(ValueError) as err:
        make_client("no-such-backend")
    assert all(name in str(err.value) for name in ("openai", "anthropic", "scripted", "langchain"))


def test_registering_a_bad_target_is_refused(registry: None) -> None:
    with pytest.raises(TypeError, match="module:attr"):
        register_backend("bad", "no_colon_here")
    with pytest.raises(ValueError, match="non-empty"):
        register_backend("", EchoClient)


# -- registering -------------------------------------------------------------------------------


def test_registered_backend_name(registry: None) -> None:
    register_backend("echo", EchoClient)
    client = make_client("echo", {"reply": "pong"})
    assert isinstance(client, EchoClient)
    assert client.complete([{"role": "user", "content": "ping"}]).text == "pong"
    with pytest.raises(ValueError) as err:
        make_client("no-such-backend")
    assert "echo" in str(err.value)


def test_registered_backend_by_import_string(registry: None) -> None:
    register_backend("scripted-too", "rlm_engine.clients.scripted:ScriptedClient")
    assert isinstance(make_client("scripted-too"), ScriptedClient)
    register_backend("missing", "no_such_module_xyz:Client")
    with pytest.raises(ImportError, match="Backend 'missing'.*needs an optional dependency"):
        make_client("missing")


def test_registered_adapter(registry: None) -> None:
    def wrap(model: ForeignModel, **kwargs: Any) -> LMClient:
        return EchoClient(model.text, **kwargs)

    register_adapter(
        "foreign", lambda obj: isinstance(obj, ForeignModel), wrap, description="a ForeignModel"
    )
    client = make_client(ForeignModel("from foreign"), {"model_name": "f-1"})
    assert isinstance(client, EchoClient)
    assert (client.reply, client.model_name) == ("from foreign", "f-1")
    with pytest.raises(TypeError, match="or a ForeignModel; got"):
        make_client(object())


def test_registered_backend_drives_an_rlm(registry: None) -> None:
    from rlm_engine.rlm import RLM

    register_backend("echo", EchoClient)
    res = RLM(backend="echo", backend_kwargs={"reply": "FINAL(done)"}).completion("ctx", "q")
    assert (res.status, res.response) == ("final", "done")


def test_an_lmclient_passes_through() -> None:
    client = EchoClient()
    assert make_client(client) is client


# -- LangChainClient through the kwargs path -------------------------------------------------


def test_model_name_kwarg_reaches_a_chat_model() -> None:
    """``backend_kwargs={"model_name": ...}`` switches a chat model to that model."""
    from rlm_integrations.langchain import ScriptedChatModel

    base = ScriptedChatModel(model="base")
    client = make_client(base, {"model_name": "other"})
    assert client.model_name == "other"
    assert client.chat_model.model_name == "other"  # type: ignore[attr-defined]
    assert base.model_name == "base"  # a copy; the original is untouched
    same = make_client(base, {"model_name": "auto"})
    assert same.chat_model is base  # type: ignore[attr-defined]
