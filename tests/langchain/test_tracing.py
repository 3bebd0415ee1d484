"""The RLM's inside as a LangChain run tree, from ``collect_runs``: shape, links, usage.

A scripted run with a known shape (3 root iterations; cells: 2; one ``llm_query`` and two
child RLMs in the first cell, a failing second cell) must give exactly that tree under the
chat model's run, every token once, and the same tree sync, async and under ``batch``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.tracers.context import collect_runs
from langchain_core.tracers.schemas import Run

from rlm_engine.scripted.model import ScriptedModel
from rlm_engine.scripted.server import ScriptedServer
from rlm_integrations.langchain import RLMChatModel

ROOT_STEPS = [
    "```repl\nyes = llm_query('Say yes.')\n"
    "sizes = rlm_query_batched(['size?', 'size?'], contexts=['aaa', 'bbbb'])\n```",
    "```repl\nprint('API key sk-abcdefghijklmnopqrstuv')\n1/0\n```",
    "FINAL_VAR(sizes)",
]
CHILD_STEP = "```repl\nFINAL(str(len(context)))\n```"


@pytest.fixture
def traced_server(scripted_model: ScriptedModel, scripted_server: ScriptedServer) -> ScriptedServer:
    scripted_model.add_rule(lambda r: r.is_rlm_root and "Query: go" in r.first_user, ROOT_STEPS)
    scripted_model.add_rule(lambda r: r.is_rlm_root, CHILD_STEP)
    return scripted_server


def _llm(server: ScriptedServer, **kw: Any) -> RLMChatModel:
    return RLMChatModel(
        model="scripted-root",
        sub_model="scripted-sub",
        base_url=server.base_url,
        api_key="sk-test",
        max_depth=2,
        max_iterations=6,
        **kw,
    )


def _usage(run: Run) -> dict[str, int]:
    if run.run_type != "llm" or not run.outputs:
        return {}
    msg = run.outputs["generations"][0][0]["message"]
    return dict(msg["kwargs"].get("usage_metadata") or {})


def _walk(run: Run) -> list[Run]:
    return [run, *(r for c in run.child_runs for r in _walk(c))]


def _shape(run: Run) -> list[Any]:
    return [(c.run_type, c.name, _shape(c)) for c in run.child_runs]


CHILD = [
    ("llm", "root:scripted-sub", []),
    ("tool", "repl", []),
]
EXPECTED = [
    (
        "chain",
        "iteration 1",
        [
            ("llm", "root:scripted-root", []),
            (
                "tool",
                "repl",
                [
                    ("llm", "llm_query:scripted-sub", []),
                    ("chain", "rlm_query_batched", [("chain", "iteration 1", CHILD)]),
                    ("chain", "rlm_query_batched", [("chain", "iteration 1", CHILD)]),
                ],
            ),
        ],
    ),
    ("chain", "iteration 2", [("llm", "root:scripted-root", []), ("tool", "repl", [])]),
    ("chain", "iteration 3", [("llm", "root:scripted-root", [])]),
]


def _check_tree(top: Run, server: ScriptedServer, msg: Any) -> None:
    assert top.run_type == "llm" and top.name == "RLMChatModel"
    assert _shape(top) == EXPECTED
    runs = _walk(top)
    # Parent links: every run points at the run that holds it.
    for run in runs:
        for child in run.child_runs:
            assert child.parent_run_id == run.id
            assert child.trace_id == top.trace_id
    # Every LM request the server answered is exactly one llm run, with its own usage.
    llm_runs = [r for r in runs if r.run_type == "llm" and r is not top]
    log = [r for r in server.stats.log if r.model]
    assert len(llm_runs) == len(log)
    by_model: Counter[str] = Counter()
    for r in llm_runs:
        model = r.outputs["generations"][0][0]["message"]["kwargs"]["response_metadata"]
        by_model[model["model_name"]] += _usage(r)["total_tokens"]
    served: Counter[str] = Counter()
    for r in log:
        served[r.model] += r.prompt_tokens + r.completion_tokens
    assert by_model == served
    # Usage appears once: the message carries what no run did (nothing here), and the run
    # total in response_metadata is the sum of the tree.
    total = msg.response_metadata["usage"]["total"]
    assert total["total_tokens"] == sum(served.values())
    assert msg.usage_metadata["total_tokens"] == 0
    # Cells: code in, output out; the failing cell is marked, secrets are redacted.
    cells = [r for r in runs if r.run_type == "tool"]
    assert all(r.inputs["input"] for r in cells)
    failing = [r for r in cells if r.error]
    assert len(failing) == 1 and "ZeroDivisionError" in failing[0].error
    assert "sk-abcdefghijklmnopqrstuv" not in failing[0].error
    assert "[REDACTED]" in failing[0].error
    # Child RLMs answer with the size of their context.
    children = [r for r in runs if r.name == "rlm_query_batched"]
    assert sorted(r.outputs["answer"] for r in children) == ["3", "4"]


def test_invoke_gives_the_run_tree(traced_server: ScriptedServer) -> None:
    llm = _llm(traced_server)
    with collect_runs() as cb, get_usage_metadata_callback() as usage_cb:
        msg = llm.invoke("go", context="root context")
    assert msg.content == "['3', '4']"
    (top,) = cb.traced_runs
    _check_tree(top, traced_server, msg)
    # get_usage_metadata_callback sums the same runs: each model's tokens once.
    counted = {m: u["total_tokens"] for m, u in usage_cb.usage_metadata.items()}
    served: Counter[str] = Counter()
    for r in traced_server.stats.log:
        if r.model:
            served[r.model] += r.prompt_tokens + r.completion_tokens
    assert {m: n for m, n in counted.items() if n} == dict(served)


async def test_ainvoke_gives_the_same_tree(traced_server: ScriptedServer) -> None:
    llm = _llm(traced_server)
    with collect_runs() as cb:
        msg = await llm.ainvoke("go", context="root context")
    (top,) = cb.traced_runs
    _check_tree(top, traced_server, msg)


def test_batch_gives_one_tree_per_input(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    llm = _llm(scripted_server)
    doc = "\n".join(
        "The secret code is 4729." if i == 150 else f"Line {i}: nothing." for i in range(300)
    )
    with collect_runs() as cb:
        msgs = llm.batch(["What is the secret code?"] * 2, context=doc)
    assert [m.content for m in msgs] == ["4729", "4729"]
    assert len(cb.traced_runs) == 2
    for top in cb.traced_runs:
        iterations = [c for c in top.child_runs if c.run_type == "chain"]
        assert iterations and [c.name for c in iterations] == [
            f"iteration {i}" for i in range(1, len(iterations) + 1)
        ]
        roots = [r for r in _walk(top) if r.name == "root:scripted-root"]
        assert len(roots) == len(iterations)
    tree_tokens = sum(
        _usage(r).get("total_tokens", 0) for t in cb.traced_runs for r in _walk(t)[1:]
    )
    served = sum(r.prompt_tokens + r.completion_tokens for r in scripted_server.stats.log)
    assert tree_tokens == served


def test_traces_hold_no_context_and_no_secret(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer, monkeypatch: Any
) -> None:
    """A 1 MB context never enters the trace (a 200 kB sub-call prompt keeps its head and
    tail), and a secret from the environment is redacted wherever it appears."""
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-very-secret-value-123")
    doc = "\n".join(
        "The secret code is 4729." if i == 15_000 else f"Line {i}: nothing of interest today."
        for i in range(30_000)
    )
    scripted_model.add_rule(
        lambda r: r.is_rlm_root and "Query: leak" in r.first_user,
        [
            "```repl\nprint('tok-very-secret-value-123')\na = llm_query(context[:200_000])\n```",
            "FINAL(done)",
        ],
    )
    llm = _llm(scripted_server)
    with collect_runs() as cb:
        llm.invoke("leak", context=doc)
    (top,) = cb.traced_runs
    kinds = Counter(r.name for r in _walk(top))
    assert kinds["repl"] == 1 and kinds["llm_query:scripted-sub"] == 1
    size = 0
    for run in _walk(top)[1:]:
        text = repr(run.inputs) + repr(run.outputs) + repr(run.error)
        size += len(text)
        assert "tok-very-secret-value-123" not in text
        assert len(text) < 20_000, run.name  # the sub-call's 1 MB prompt: head and tail only
    assert size < 100_000


def test_a_continued_conversation_turn_is_traced_too(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer
) -> None:
    from langchain_core.messages import HumanMessage

    llm = _llm(scripted_server)
    doc = "\n".join(
        "The secret code is 4729." if i == 150 else f"Line {i}: nothing." for i in range(300)
    )
    msgs: list[Any] = [HumanMessage("What is the secret code?")]
    msgs += [llm.invoke(msgs, context=doc), HumanMessage("Thanks! Say it again.")]
    with collect_runs() as cb:
        llm.invoke(msgs, context=doc)  # continues the first call's REPL (a new turn)
    (top,) = cb.traced_runs
    iterations = [c for c in top.child_runs if c.name.startswith("iteration ")]
    assert iterations
    roots = [r for r in _walk(top) if r.name == "root:scripted-root"]
    assert len(roots) == len(iterations) and all(_usage(r)["total_tokens"] > 0 for r in roots)


def test_no_handler_builds_no_runs(traced_server: ScriptedServer, monkeypatch: Any) -> None:
    """Without a callback handler the tree only adds up tokens: no run is worked out (the
    time this saves is measured in benchmarks/bench_tracing.py)."""
    from rlm_integrations.langchain.tracing import RunTree

    applied: list[str] = []
    original = RunTree._apply

    def counting(self: RunTree, e: dict[str, Any], ops: list[Any]) -> None:
        applied.append(str(e.get("event")))
        original(self, e, ops)

    monkeypatch.setattr(RunTree, "_apply", counting)
    msg = _llm(traced_server).invoke("go", context="root context")
    assert msg.content == "['3', '4']" and applied == []
    assert msg.usage_metadata["total_tokens"] == 0  # the same usage rule, traced or not
    with collect_runs():
        _llm(traced_server).invoke("go", context="root context")
    assert "iteration_start" in applied


def test_langchain_models_nest_their_own_runs_in_the_tree() -> None:
    """A LangChain ``llm``/``sub_llm`` reports its calls itself: root turns under their
    iteration, sub-calls under the cell that made them, each once, with its usage."""
    from rlm_integrations.langchain import ScriptedChatModel

    scripted = ScriptedModel()
    doc = "\n".join(
        "The secret code is 4729." if i == 1500 else f"Line {i}: nothing of interest today."
        for i in range(3000)
    )
    llm = RLMChatModel(
        llm=ScriptedChatModel(model="scripted-root", scripted=scripted),
        sub_llm=ScriptedChatModel(model="scripted-sub", scripted=scripted),
        max_iterations=8,
    )
    with collect_runs() as cb, get_usage_metadata_callback() as usage_cb:
        msg = llm.invoke("What is the secret code?", context=doc)
    assert msg.content == "4729"
    (top,) = cb.traced_runs
    iterations = [c for c in top.child_runs if c.name.startswith("iteration ")]
    assert iterations and [c.run_type for c in top.child_runs] == ["chain"] * len(iterations)
    for it in iterations:
        (root,) = [c for c in it.child_runs if c.run_type == "llm"]
        assert root.name == "rlm:scripted-root" and _usage(root)["total_tokens"] > 0
    cells = [c for it in iterations for c in it.child_runs if c.run_type == "tool"]
    subs = [s for c in cells for s in c.child_runs]
    assert subs and {s.name for s in subs} == {"rlm:scripted-sub"}
    total = msg.response_metadata["usage"]["total"]["total_tokens"]
    tree = sum(_usage(r).get("total_tokens", 0) for r in _walk(top)[1:])
    assert tree == total == sum(u["total_tokens"] for u in usage_cb.usage_metadata.values())
