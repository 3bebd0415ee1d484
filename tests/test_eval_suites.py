"""rlm eval, offline parts: suite generators, scorers, user suites, summary, cost estimate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlm_engine.config import RLMConfig
from rlm_engine.evals import (
    SUITES,
    CostGuardError,
    EvalSpec,
    RunRecord,
    SuiteFileError,
    Task,
    generate,
    load_suite,
    parse_size,
    recommend_threshold,
    score,
    summarize,
)
from rlm_engine.evals.arms import Window
from rlm_engine.evals.cost import prices, run_estimate
from rlm_engine.evals.runner import _estimate
from rlm_engine.evals.summary import percentile
from rlm_engine.scripted.eval_reader import question_kind, read_whole


def _text(task: Task) -> str:
    return task.context if isinstance(task.context, str) else "\n".join(task.context)


# ----------------------------------------------------------------------------- generators


@pytest.mark.parametrize("suite", list(SUITES))
def test_generator_is_seeded_and_sized(suite: str) -> None:
    for size in (1_000, 4_000, 30_000):
        for index in (0, 1):
            a = generate(suite, 7, size, index)
            b = generate(suite, 7, size, index)
            assert (a.context, a.query, a.answer) == (b.context, b.query, b.answer)
            assert abs(a.context_tokens - size) <= 0.05 * size, (suite, size, a.context_tokens)
            assert a.size == size and a.suite == suite
    other = generate(suite, 8, 4_000, 0)
    assert (other.context, other.answer) != (
        generate(suite, 7, 4_000, 0).context,
        generate(suite, 7, 4_000, 0).answer,
    )


@pytest.mark.parametrize("suite", list(SUITES))
def test_every_task_is_answerable_from_its_context(suite: str) -> None:
    """Reading the whole context exactly gives the expected answer (score 1)."""
    for index in range(4):
        task = generate(suite, 3, 6_000, index)
        kind = question_kind(task.query)
        assert kind is not None, task.query
        assert score(read_whole(kind, _text(task)), task) == 1.0, (suite, index)


def test_niah_distractors_are_look_alikes_and_score_zero() -> None:
    task = generate("niah", 0, 4_000, 0)
    text = _text(task)
    key = task.query.split("for the ")[1].split(" vault")[0]
    color, animal = key.split("-")
    assert text.count("Security log: the access code") == 5
    for code in task.meta["distractors"]:
        line = next(ln for ln in text.splitlines() if code in ln)
        assert (color in line) != (animal in line)  # shares one half of the name
    assert score(task.meta["distractors"][0], task) == 0.0
    assert score(f"{task.answer} (or maybe {task.meta['distractors'][1]})", task) == 0.0


def test_aggregate_labels_are_never_written() -> None:
    task = generate("aggregate", 0, 8_000, 2)
    body = _text(task)
    for topic in ("billing", "shipping", "technical", "praise"):
        assert topic not in body.lower()
    assert int(task.answer) > 0


def test_pairs_grow_quadratically_with_same_city_users() -> None:
    task = generate("pairs", 0, 8_000, 0)
    pairs = task.meta["items"]
    assert pairs == sorted(pairs) and len(pairs) == len(set(pairs))
    users = {p for pair in pairs for p in pair.split("-")}
    assert len(users) <= 12 and len(pairs) >= len(users) // 2


def test_codeqa_has_mentions_and_lookalikes_that_are_not_calls() -> None:
    task = generate("codeqa", 0, 8_000, 0)
    text = _text(task)
    target = task.query.split("calls ")[1].split("(")[0]
    mention, lookalike = task.meta["distractors"]
    assert f"Unlike {target}" in text and f"{target}_v2(item)" in text
    assert score(task.answer, task) == 1.0 and score(mention, task) == 0.0
    settings = generate("codeqa", 0, 8_000, 1)
    headers = [d.split("\n", 1)[0] for d in settings.context]
    assert headers == sorted(headers)  # documents in load order


def test_parse_size() -> None:
    assert [parse_size(s) for s in ("8k", "2M", "512", "1.5k")] == [8_000, 2_000_000, 512, 1_500]
    with pytest.raises(ValueError, match="tokens like 8k"):
        parse_size("eight")
    with pytest.raises(ValueError, match="at least 256"):
        parse_size("10")


# ----------------------------------------------------------------------------- scorers


def _task(answer: str, scorer: str, **meta: object) -> Task:
    return Task("t", 1_000, 0, 0, "", "q", answer, scorer, dict(meta))


def test_scorers_and_partial_credit() -> None:
    assert score("The code is 482913.", _task("482913", "needle")) == 1.0
    assert score("4829130", _task("482913", "needle")) == 0.0  # whole tokens only
    assert score("Paris", _task("paris", "exact")) == 1.0
    assert score("Paris, France", _task("paris", "exact")) == 0.0
    assert score("It is Paris, France", _task("paris", "contains")) == 1.0
    assert score("12", _task("12", "number")) == 1.0
    assert score("There are 14 of them", _task("12", "number")) == 0.5625  # 0.75 ** 2
    assert score("1,204", _task("1204", "number")) == 1.0
    items = ["rope", "tent", "map", "saw"]
    assert score("rope, tent", _task("", "list_f1", items=items)) == round(2 * 1 * 0.5 / 1.5, 4)
    assert score("rope, tent, map, saw, kettle", _task("", "list_f1", items=items)) == round(
        2 * 0.8 / 1.8, 4
    )
    assert score("saw and map, tent; rope", _task("", "list_f1", items=items)) == 1.0
    pairs = ["12-34", "12-56"]
    assert score("34-12, 12-56", _task("", "pairs_f1", items=pairs)) == 1.0
    assert score("12-34", _task("", "pairs_f1", items=pairs)) == round(2 * 0.5 / 1.5, 4)
    assert score(None, _task("x", "exact")) == 0.0 and score("  ", _task("x", "exact")) == 0.0
    with pytest.raises(ValueError, match="unknown scorer"):
        score("x", _task("x", "fuzzy"))


# ----------------------------------------------------------------------------- user suites


def test_user_suite_from_context_file_and_directory(tmp_path: Path) -> None:
    (tmp_path / "doc.txt").write_text("The capital is Oslo.\n" * 100)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.py").write_text("X = 1\n")
    (repo / ".hidden").write_text("secret")
    lines = [
        {"context": "abc " * 500, "query": "q1?", "answer": "abc"},
        {"path": "doc.txt", "query": "Capital?", "answer": "Oslo", "scorer": "needle", "id": "cap"},
        {"path": "repo", "query": "X?", "answer": "1", "scorer": "exact"},
    ]
    f = tmp_path / "mine.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    tasks = load_suite(f)
    assert [t.suite for t in tasks] == ["mine"] * 3
    assert [t.index for t in tasks] == [0, 1, 2]
    assert tasks[0].size == 500 and tasks[0].scorer == "contains"
    assert tasks[1].meta["id"] == "cap" and tasks[1].context.startswith("The capital")
    assert tasks[2].context == ["--- file: a.py ---\nX = 1\n"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "mine.jsonl:2: not JSON"),
        ('{"query": "q", "answer": "a"}', "exactly one of context"),
        ('{"context": "c", "query": 1, "answer": "a"}', "query must be a string"),
        (
            '{"context": "c", "query": "q", "answer": "a", "scorer": "fuzzy"}',
            "unknown scorer 'fuzzy'",
        ),
        ('{"path": "nowhere.txt", "query": "q", "answer": "a"}', "does not exist"),
    ],
)
def test_user_suite_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    f = tmp_path / "mine.jsonl"
    f.write_text('{"context": "c", "query": "q", "answer": "a"}\n' + line + "\n")
    with pytest.raises(SuiteFileError, match=message):
        load_suite(f)


# ----------------------------------------------------------------------------- summary


def _rec(arm: str, size: int, score_: float, **kw: object) -> RunRecord:
    return RunRecord(
        arm, "niah", size, 0, int(kw.pop("index", 0)), str(kw.pop("status", "final")), score_, **kw
    )  # type: ignore[arg-type]


def test_summary_cells_and_percentiles() -> None:
    recs = [
        _rec("rlm", 8_000, 1.0, latency=1.0, cost=0.02, index=0),
        _rec("rlm", 8_000, 0.5, latency=3.0, cost=0.04, index=1),
        _rec("direct", 8_000, 0.0, status="over_window", index=0),
        _rec("direct", 8_000, 1.0, latency=0.5, cost=0.01, index=1),
    ]
    cells = {(c.arm, c.suite): c for c in summarize(recs)}
    rlm = cells[("rlm", "niah")]
    assert rlm.accuracy == 0.75 and rlm.mean_cost == pytest.approx(0.03)
    assert rlm.p50_latency == 1.0 and rlm.p95_latency == 3.0
    direct = cells[("direct", "niah")]
    assert direct.over_window == 1 and direct.accuracy == 0.5 and direct.p50_latency == 0.5
    assert ("rlm", "all") in cells
    assert percentile([5, 1, 3, 2, 4], 50) == 3 and percentile([], 50) is None


def test_threshold_is_the_largest_size_where_direct_keeps_up() -> None:
    recs = [
        _rec("direct", 8_000, 1.0),
        _rec("rlm", 8_000, 1.0),
        _rec("direct", 32_000, 0.97),
        _rec("rlm", 32_000, 1.0),
        _rec("direct", 128_000, 0.4),
        _rec("rlm", 128_000, 0.95),
        _rec("direct", 512_000, 1.0),
        _rec("rlm", 512_000, 0.9),  # noise past the drop
    ]
    t = recommend_threshold(recs)
    assert t.size == 32_000 and t.tokens == int(32_000 * 4 / 3.5) + 500
    assert "direct_threshold_tokens" in t.text and "32k" in t.text
    worse = recommend_threshold([_rec("direct", 8_000, 0.5), _rec("rlm", 8_000, 1.0)])
    assert worse.size is None and "keep mode='rlm'" in worse.text


# ----------------------------------------------------------------------------- cost


def test_estimate_prices_sizes_and_guard() -> None:
    config = RLMConfig(backend="openai", model="gpt-5-mini", sub_model="gpt-5-nano")
    p = prices(config)
    assert p.root == (0.25, 2.0) and p.sub == (0.05, 0.4) and p.unknown == []
    tokens, cost = run_estimate("direct", 100_000, p, direct=True)
    assert tokens == 100_400 and cost == pytest.approx((100_300 * 0.25 + 100 * 2.0) / 1e6)
    _, rlm = run_estimate("rlm", 100_000, p, direct=False)
    _, d2 = run_estimate("rlm-d2", 100_000, p, direct=False)
    assert rlm is not None and d2 is not None and d2 > rlm
    spec = EvalSpec(suites=["niah"], sizes=[8_000, 2_000_000], tasks=2)
    est = _estimate(spec, config, Window(272_000, "test"), {}, False)
    assert est.runs == 16 and est.cost is not None and est.cost > 0
    est.check(est.cost * 1.01)
    with pytest.raises(CostGuardError, match="over --max-cost"):
        est.check(est.cost / 2)
    est.check(None)


def test_unknown_price_refuses_unless_given_or_lifted() -> None:
    config = RLMConfig(backend="openai", model="my-local-model")
    spec = EvalSpec(suites=["niah"], sizes=[8_000], tasks=1)
    est = _estimate(spec, config, Window(100_000, "test"), {}, False)
    assert est.cost is None
    with pytest.raises(CostGuardError, match="no known price for my-local-model"):
        est.check(5.0)
    est.check(None)
    priced = config.replace(backend_kwargs={"pricing": [1.0, 2.0]})
    assert _estimate(spec, priced, Window(100_000, "test"), {}, False).cost is not None
    free = _estimate(spec, RLMConfig(backend="scripted"), Window(100_000, "test"), {}, False)
    assert free.cost == 0.0


def test_spec_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown suite"):
        EvalSpec(suites=["nope"])
    with pytest.raises(ValueError, match="unknown arm"):
        EvalSpec(arms=["rlm-d9"])


def test_direct_simulation_is_seeded_decays_with_length_and_stops_at_its_window() -> None:
    """The scripted direct model (a simulation, rlm_engine.scripted.direct_sim) answers the
    whole-context prompt the engine's direct path sends: right less often as it grows,
    the same answer for the same prompt, nothing past its window; a wrong answer is a
    plausible one (a look-alike vault's code), not noise."""
    from rlm_engine.direct import direct_messages
    from rlm_engine.scripted import Request, ScriptedModel
    from rlm_engine.scripted.direct_sim import WINDOW_TOKENS

    model = ScriptedModel()

    def ask(task: Task) -> str:
        return model.respond(Request(messages=direct_messages(task.context, task.query))).text

    def right(size: int) -> int:
        return sum(
            score(ask(t), t) == 1.0 for t in (generate("niah", s, size, 0) for s in range(20))
        )

    assert right(4_000) >= 17 and right(150_000) <= 12
    task = generate("niah", 0, 150_000, 0)
    assert ask(task) == ask(task)
    answers = {ask(generate("niah", s, 150_000, 0)) for s in range(20)}
    wrong = {a for a in answers if not a.isdigit()}
    assert wrong <= {"NOT FOUND"}
    too_long = generate("niah", 0, WINDOW_TOKENS + 10_000, 0)
    assert ask(too_long) == "The input is longer than I can read."


def test_spec_sizes_take_labels_and_refuse_tiny_ones() -> None:
    assert EvalSpec(sizes=["8k", 2_000]).sizes == (8_000, 2_000)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at least 256 tokens"):
        EvalSpec(sizes=[100])
