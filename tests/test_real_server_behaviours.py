"""What real local servers do that a lenient API does not (issue 15, items 1-3).

Against the scripted server made to behave like llama.cpp / vLLM serving a weak model:
replies cut at a cap (the request's ``max_tokens`` or the server's own ``n_predict``,
reported as ``finish_reason: "length"`` / ``stop_reason: "max_tokens"``) and chat
templates that refuse two consecutive messages of one role with a 400. On the OpenAI and
the Anthropic wire, through the real SDKs; the role invariant is also checked on every
request the engine itself builds, before any client could repair it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rlm_engine import RLM
from rlm_engine.clients.scripted import ScriptedClient
from rlm_engine.compaction import COMPACTION_REQUEST
from rlm_engine.config import DEFAULT_MAX_REPLY_TOKENS
from rlm_engine.prompts import FINAL_ANSWER_REQUEST
from rlm_engine.scripted import Request, ScriptedModel, ScriptedServer
from rlm_engine.scripted.wire import ALTERNATION_ERROR
from rlm_engine.types import LMResponse, Message

BACKENDS = ["openai", "anthropic"]
CAP = 50  # tokens: 200 characters of the scripted model's text

#: A root turn that runs on past the cap: its code block is never closed in what arrives.
LONG_TURN = "```repl\nmarker = 'ran'\n" + "".join(f"# step {i}: more\n" for i in range(80)) + "```"


def is_root(r: Request) -> bool:
    return r.is_rlm_root


def roles_alternate(messages: list[Message]) -> bool:
    """System messages first, then user, assistant, user, ... (a strict chat template)."""
    roles = [m["role"] for m in messages]
    while roles and roles[0] == "system":
        roles.pop(0)
    return all(r == ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(roles))


def rlm_for(server: ScriptedServer, backend: str, **options: Any) -> RLM:
    return RLM(
        backend=backend,
        model="scripted-root",
        base_url=server.base_url if backend == "openai" else server.url,
        api_key="sk-test",
        environment="local",
        max_retries=0,
        **options,
    )


@pytest.fixture
def strict_server(scripted_model: ScriptedModel) -> Iterator[ScriptedServer]:
    with ScriptedServer(scripted_model, strict_roles=True) as server:
        yield server


def refused_for_roles(server: ScriptedServer) -> int:
    return sum(1 for r in server.stats.log if r.fault == "roles")


# -- the scripted server's behaviours ------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_strict_server_refuses_two_user_messages_in_a_row(
    strict_server: ScriptedServer, backend: str
) -> None:
    import anthropic
    import openai

    two_users = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    if backend == "openai":
        client = openai.OpenAI(base_url=strict_server.base_url, api_key="k", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="roles must alternate"):
            client.chat.completions.create(model="scripted-root", messages=two_users)  # type: ignore[arg-type]
        ok = client.chat.completions.create(
            model="scripted-root",
            messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "a b"}],
        )
        assert ok.choices[0].message.content
    else:
        aclient = anthropic.Anthropic(base_url=strict_server.url, api_key="k", max_retries=0)
        with pytest.raises(anthropic.BadRequestError, match="roles must alternate"):
            aclient.messages.create(model="scripted-root", max_tokens=100, messages=two_users)  # type: ignore[arg-type]
    assert refused_for_roles(strict_server) == 1
    assert ALTERNATION_ERROR.startswith("Conversation roles must alternate")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stream", [False, True])
def test_server_side_reply_cap_reports_length(
    scripted_model: ScriptedModel, backend: str, stream: bool
) -> None:
    import anthropic
    import openai

    scripted_model.add_rule(lambda r: True, "word " * 400)
    with ScriptedServer(scripted_model, max_reply_tokens=CAP) as server:
        if backend == "openai":
            client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
            msgs: Any = [{"role": "user", "content": "go"}]
            if stream:
                chunks = list(
                    client.chat.completions.create(
                        model="scripted-root", messages=msgs, max_tokens=8192, stream=True
                    )
                )
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
            else:
                reply = client.chat.completions.create(
                    model="scripted-root", messages=msgs, max_tokens=8192
                )
                text, finish = (
                    reply.choices[0].message.content or "",
                    reply.choices[0].finish_reason,
                )
                assert reply.usage is not None and reply.usage.completion_tokens == CAP
            assert finish == "length"
        else:
            aclient = anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0)
            msgs = [{"role": "user", "content": "go"}]
            if stream:
                with aclient.messages.stream(
                    model="scripted-root", max_tokens=8192, messages=msgs
                ) as s:
                    message = s.get_final_message()
            else:
                message = aclient.messages.create(
                    model="scripted-root", max_tokens=8192, messages=msgs
                )
            text = "".join(b.text for b in message.content if b.type == "text")
            assert message.stop_reason == "max_tokens"
            assert message.usage.output_tokens == CAP
        assert len(text) == CAP * 4
        assert [r.finish_reason for r in server.stats.completions()] == ["length"]


def test_server_options_and_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from rlm_engine.scripted import server as server_module

    with pytest.raises(ValueError, match="max_reply_tokens"):
        ScriptedServer(max_reply_tokens=0)
    with pytest.raises(SystemExit):  # --help lists the flags and exits before serving
        server_module.main(["--strict-roles", "--max-reply-tokens", "5", "--help"])
    shown = capsys.readouterr().out
    assert "--strict-roles" in shown and "--max-reply-tokens" in shown


# -- item 1: a default reply cap, reaching every engine client ----------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_reply_cap_reaches_the_server_and_backend_kwargs_win(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer, backend: str
) -> None:
    caps: list[int | None] = []

    def answer(r: Request) -> str:
        caps.append(r.max_tokens)
        return "FINAL(ok)"

    scripted_model.add_rule(is_root, answer)
    assert rlm_for(scripted_server, backend).completion("c", "q").response == "ok"
    explicit = rlm_for(scripted_server, backend, max_tokens=300, backend_kwargs={"max_tokens": 77})
    assert explicit.completion("c", "q").response == "ok"
    assert caps == [DEFAULT_MAX_REPLY_TOKENS, 77]


def test_default_reply_cap_reaches_the_scripted_backend() -> None:
    from rlm_engine.clients.configured import make_clients
    from rlm_engine.config import RLMConfig

    built, _ = make_clients(RLMConfig(backend="scripted"))
    assert isinstance(built, ScriptedClient) and built.max_tokens == DEFAULT_MAX_REPLY_TOKENS
    built, _ = make_clients(RLMConfig(backend="scripted", backend_kwargs={"max_tokens": 9}))
    assert isinstance(built, ScriptedClient) and built.max_tokens == 9


# -- item 2: a reply cut at the cap ----------------------------------------------------------


def _truncation_script(model: ScriptedModel, seen: list[str]) -> None:
    """A first root turn that runs past the cap; ``seen`` gets the next turns' feedback."""

    def after(r: Request) -> str:
        seen.append(r.last_user)
        return "FINAL(done)" if len(seen) > 1 else "```repl\nprint(globals().get('marker'))\n```"

    model.add_rule(is_root, [LONG_TURN])
    model.add_rule(is_root, after)


def _assert_truncation_feedback(feedback: str, cut_at: int) -> None:
    assert f"cut off at the reply cap of {cut_at} tokens" in feedback
    assert "did not run" in feedback and "shorter steps" in feedback
    assert "no ```repl code block" not in feedback


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("capped_by", ["client", "server"])
def test_root_reply_cut_at_the_cap_gets_truncation_feedback(
    scripted_model: ScriptedModel, backend: str, capped_by: str
) -> None:
    seen: list[str] = []
    _truncation_script(scripted_model, seen)
    server_cap = CAP if capped_by == "server" else None
    with ScriptedServer(scripted_model, max_reply_tokens=server_cap) as server:
        options = {"max_tokens": CAP} if capped_by == "client" else {}
        res = rlm_for(server, backend, **options).completion("some context", "q")
        finishes = [r.finish_reason for r in server.stats.completions()]
    assert res.status == "final" and res.response == "done", res.error
    first, second = res.iterations[0], res.iterations[1]
    assert first.code_blocks == []  # the unclosed block did not run...
    _assert_truncation_feedback(first.feedback, CAP)
    assert "None" in second.feedback  # ...so `marker` was never set
    assert seen and f"reply cap of {CAP} tokens" in seen[0]  # the root was told
    assert finishes[0] == "length" and first.output_tokens == CAP


def test_truncated_reply_in_process_and_its_clipped_final_is_not_taken() -> None:
    """The engine's part alone (the scripted backend in-process, no HTTP): a FINAL( that
    a cut left unclosed inside an unfinished block is not read as the answer."""
    model = ScriptedModel()
    clipped = "```repl\nresult = 6 * 7\nFINAL(result" + " " * 400 + ")\n```"
    model.add_rule(is_root, [clipped, "FINAL(42)"])
    client = ScriptedClient(model=model, max_tokens=CAP)
    res = RLM(backend=client, environment="local").completion("c", "q")
    assert res.response == "42" and len(res.iterations) == 2
    _assert_truncation_feedback(res.iterations[0].feedback, CAP)


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_sub_call_answer_is_marked(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer, backend: str
) -> None:
    scripted_model.add_rule(lambda r: not r.is_rlm_root and "essay" in r.last_user, "word " * 400)
    scripted_model.add_rule(
        is_root,
        [
            "```repl\nanswer = llm_query('Write a long essay')\nprint(answer[-45:])\n```",
            "FINAL_VAR(answer)",
        ],
    )
    res = rlm_for(scripted_server, backend, max_tokens=CAP).completion("c", "q")
    assert res.status == "final", res.error
    note = f"[cut at the reply cap of {CAP} tokens]"
    assert res.response is not None and res.response.endswith(note)
    call = res.iterations[0].code_blocks[0].subcalls[0]
    assert call.truncated and call.response.endswith(note) and call.error is None
    assert note in res.iterations[0].feedback  # the code that asked printed it


# -- item 3: never two consecutive messages of one role --------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_final_answer_request_is_accepted_by_a_strict_server(
    scripted_model: ScriptedModel, strict_server: ScriptedServer, backend: str
) -> None:
    scripted_model.add_rule(
        lambda r: r.is_rlm_root and FINAL_ANSWER_REQUEST in r.last_user, "FINAL(best guess)"
    )
    scripted_model.add_rule(is_root, "```repl\nprint('working')\n```")
    res = rlm_for(strict_server, backend, max_iterations=2).completion("c", "q")
    assert res.status == "max_iterations"
    assert res.partial_answer == "best guess"
    assert refused_for_roles(strict_server) == 0


def _long_run(model: ScriptedModel, steps: int) -> None:
    model.add_rule(
        lambda r: r.is_rlm_root and COMPACTION_REQUEST in r.last_user,
        "Progress: `total` holds the running sum.",
    )
    turns = [
        f"```repl\ntotal = globals().get('total', 0) + {i}\nprint('step {i}:', 'x' * 1500)\n```"
        for i in range(1, steps + 1)
    ]
    model.add_rule(is_root, [*turns, "FINAL_VAR(total)"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_compacted_run_on_a_strict_server_gets_the_roots_summary(
    scripted_model: ScriptedModel, strict_server: ScriptedServer, backend: str
) -> None:
    _long_run(scripted_model, 10)
    events: list[dict[str, Any]] = []
    rlm = rlm_for(strict_server, backend, root_context_window=2_500)
    res = rlm.completion("c", "Sum the steps.", on_event=events.append)
    assert res.status == "final" and res.response == str(sum(range(1, 11))), res.error
    kinds = [e["kind"] for e in events if e["event"] == "compaction"]
    assert kinds and set(kinds) == {"summary"}  # the summary request was accepted
    assert refused_for_roles(strict_server) == 0


class RecordingClient(ScriptedClient):
    """The scripted model in-process, keeping every request exactly as the engine built
    it (no client-side merging): the engine's own invariant."""

    def __init__(self, model: ScriptedModel) -> None:
        super().__init__(model=model)
        self.requests: list[list[Message]] = []

    async def acomplete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        self.requests.append([dict(m) for m in messages])
        return await super().acomplete(messages, model=model, timeout=timeout)


def test_every_request_the_engine_builds_alternates_roles() -> None:
    model = ScriptedModel()
    model.add_rule(
        lambda r: r.is_rlm_root and FINAL_ANSWER_REQUEST in r.last_user, "FINAL(best guess)"
    )
    # Conversation turns: the first runs out of turns, the second (whose opening message
    # recalls the first) answers at once.
    model.add_rule(lambda r: r.is_rlm_root and "second question" in r.first_user, "FINAL(two)")
    model.add_rule(
        lambda r: r.is_rlm_root and "first question" in r.first_user, "```repl\nprint(1)\n```"
    )
    # A compacted run that runs out of turns: summary request, then final-answer request.
    _long_run(model, 12)
    client = RecordingClient(model)
    events: list[dict[str, Any]] = []
    rlm = RLM(backend=client, environment="local", max_iterations=8, root_context_window=2_500)
    res = rlm.completion("c", "Sum the steps.", on_event=events.append)
    assert res.status == "max_iterations" and res.partial_answer == "best guess"
    assert [e for e in events if e["event"] == "compaction"]
    with rlm.conversation("some material") as conv:
        assert conv.send("first question").answer == "best guess"
        assert conv.send("second question").response == "two"
    asked = [msgs[-1]["content"] for msgs in client.requests]
    assert any(COMPACTION_REQUEST in a for a in asked)
    assert sum(FINAL_ANSWER_REQUEST in a for a in asked) == 2
    bad = [msgs for msgs in client.requests if not roles_alternate(msgs)]
    assert not bad, [[m["role"] for m in msgs] for msgs in bad[:1]]


# -- the LangChain form --------------------------------------------------------------------


def test_chat_model_root_reply_cut_at_the_cap_gets_truncation_feedback(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    from rlm_integrations.langchain import RLMChatModel

    seen: list[str] = []
    _truncation_script(scripted_model, seen)
    chat = RLMChatModel(
        backend="openai",
        model="scripted-root",
        base_url=scripted_server.base_url,
        api_key="sk-test",
        environment="local",
        max_completion_tokens=CAP,
    )
    assert chat.invoke("q").content == "done"
    assert seen and f"cut off at the reply cap of {CAP} tokens" in seen[0]
    assert "no ```repl code block" not in seen[0]
