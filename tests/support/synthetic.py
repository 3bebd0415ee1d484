"""Synthetic trajectories in the ``RLMLogger`` format, for the viewer and CLI tests.

They let the viewer be exercised at sizes no scripted run produces quickly (1,000
iterations, 100,000 sub-calls) and with every feature at once: failing code blocks, failed sub-calls, nested
``rlm_query`` children, hostile model output, a missing result line.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

HOSTILE = '</script><script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def _subcall(
    rng: random.Random, function: str, n: int, depth: int, model: str, hostile: bool
) -> dict[str, Any]:
    prompt = f"Summarize chunk {n}: the quarterly report section {n} says revenue grew {n % 17}%."
    if hostile and n == 0:
        prompt += " " + HOSTILE
    inp, out = 40 + rng.randrange(400), 5 + rng.randrange(60)
    return {
        "function": function,
        "prompt": prompt,
        "prompt_chars": len(prompt) * (20 if n % 7 == 0 else 1),
        "response": f"Chunk {n}: revenue up {n % 17}%, margin stable.",
        "model": model,
        "depth": depth,
        "input_tokens": inp,
        "output_tokens": out,
        "cost": (inp * 0.25 + out * 2.0) / 1e6,
        "latency": round(0.05 + rng.random() * 0.8, 3),
        "error": "RateLimitError: 429 Too Many Requests" if n % 97 == 96 else None,
        "replayed": False,
        "children": [],
    }


BATCH_CODE = (
    "# split the context into chunks and ask a sub-model about each\n"
    "chunks = [context[i:i + 10_000] for i in range(0, len(context), 10_000)][:{n_sub}]\n"
    'answers = llm_query_batched([f"Summarize: {{c}}" for c in chunks])\n'
    "print(len(answers), answers[:2])"
)
RISK_QUERY = "Find every risk factor mentioned in this section and rank them."
RISK_ANSWER = "1. currency exposure 2. supplier concentration"
FINAL_ANSWER = "Revenue grew in every quarter; the main risks are currency and suppliers."


def _block(
    code: str,
    *,
    stdout: str = "",
    error: str | None = None,
    duration: float,
    subcalls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One code block record; only what varies between the synthetic blocks is a parameter."""
    return {
        "code": code,
        "stdout": stdout,
        "stderr": "",
        "error": error,
        "final": None,
        "timed_out": False,
        "crashed": False,
        "duration": duration,
        "subcalls": subcalls or [],
    }


def _batch_block(
    rng: random.Random, n_sub: int, depth: int, sub_model: str, hostile: bool
) -> dict[str, Any]:
    """The ``llm_query_batched`` block every iteration starts with."""
    subcalls = [
        _subcall(rng, "llm_query_batched", n, depth + 1, sub_model, hostile) for n in range(n_sub)
    ]
    return _block(
        BATCH_CODE.format(n_sub=n_sub),
        stdout=f"{n_sub} ['Chunk 0: revenue up 0%', 'Chunk 1: revenue up 1%']\n",
        duration=round(0.01 + sum(s["latency"] for s in subcalls[:16]), 3),
        subcalls=subcalls,
    )


def _error_block() -> dict[str, Any]:
    """A block that fails with a ``NameError`` (a typo, as models make them)."""
    return _block(
        "total = sum(int(a.split()[3].rstrip('%,')) for a in answers)\nprint(totl)",
        error="NameError: name 'totl' is not defined",
        duration=0.002,
    )


def _rlm_query_block(
    rng: random.Random, depth: int, child_depth: int, models: tuple[str, str]
) -> dict[str, Any]:
    """A block whose ``rlm_query`` sub-call carries a child run of two iterations."""
    children = [
        _iteration(
            rng,
            k,
            2,
            depth=depth + 1,
            last=k == 1,
            child_depth=child_depth - 1,
            hostile=False,
            models=models,
        )
        for k in range(2)
    ]
    rlm_call = _subcall(rng, "rlm_query", 1, depth + 1, models[0], False)
    rlm_call.update(prompt=RISK_QUERY, response=RISK_ANSWER, children=children, error=None)
    return _block(
        f'risks = rlm_query("{RISK_QUERY}", context=chunks[0])\nprint(risks)',
        stdout=RISK_ANSWER + "\n",
        duration=1.5,
        subcalls=[rlm_call],
    )


def _root_response(index: int, code: str, hostile: bool) -> str:
    response = (
        f"Iteration {index}: I will look at the chunks and query them in a batch.\n"
        f"```repl\n{code}\n```\n"
    )
    if hostile and index == 0:
        response += "Model text with markup: " + HOSTILE + "\n"
    return response


def _iteration(
    rng: random.Random,
    index: int,
    n_sub: int,
    *,
    depth: int,
    last: bool,
    child_depth: int,
    hostile: bool,
    models: tuple[str, str],
) -> dict[str, Any]:
    """One iteration record: a batch block, every fifth an error, every third a child run."""
    blocks = [_batch_block(rng, n_sub, depth, models[1], hostile)]
    if index % 5 == 2:
        blocks.append(_error_block())
    if child_depth > 0 and index % 3 == 1:
        blocks.append(_rlm_query_block(rng, depth, child_depth, models))
    if last:
        blocks[-1]["final"] = FINAL_ANSWER
    inp, out = 2_000 + 150 * index + rng.randrange(500), 100 + rng.randrange(300)
    root_latency = round(0.4 + rng.random() * 2, 3)
    return {
        "type": "iteration",
        "run_id": "synthetic",
        "depth": depth,
        "index": index,
        "response": _root_response(index, blocks[0]["code"], hostile),
        "code_blocks": blocks,
        "final_answer": FINAL_ANSWER if last else None,
        "feedback": "REPL output:\n" + "\n".join(b["stdout"] for b in blocks),
        "input_tokens": inp,
        "output_tokens": out,
        "cost": (inp * 1.25 + out * 10.0) / 1e6,
        "root_latency": root_latency,
        "duration": round(root_latency + sum(b["duration"] for b in blocks), 3),
    }


def synthetic_records(
    iterations: int = 6,
    subcalls_per_iteration: int = 4,
    *,
    child_depth: int = 1,
    complete: bool = True,
    hostile: bool = True,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Metadata, iteration and (unless ``complete=False``) result records of one run."""
    rng = random.Random(seed)
    models = ("gpt-5", "gpt-5-mini")
    query = "What happened to revenue, and what are the main risks?"
    meta = {
        "type": "metadata",
        "version": 1,
        "run_id": "synthetic",
        "started_at": "2026-01-01T12:00:00+00:00",
        "query": query + (" " + HOSTILE if hostile else ""),
        "context": {
            "type": "str",
            "total_chars": 1_250_000,
            "preview": "ANNUAL REPORT 2025\n\nSection 1. Overview ...",
        },
        "config": {
            "root_model": models[0],
            "sub_model": models[1],
            "environment": "local",
            "max_iterations": max(iterations, 30),
            "max_depth": child_depth + 1,
        },
    }
    its = [
        _iteration(
            rng,
            i,
            subcalls_per_iteration,
            depth=0,
            last=complete and i == iterations - 1,
            child_depth=child_depth,
            hostile=hostile,
            models=models,
        )
        for i in range(iterations)
    ]
    records = [meta, *its]
    if complete:
        from rlm_engine.viewer.trace import computed_usage

        usage = computed_usage(its)
        records.append(
            {
                "type": "result",
                "run_id": "synthetic",
                "status": "final",
                "response": its[-1]["final_answer"] if its else None,
                "error": None,
                "duration": round(sum(i["duration"] for i in its), 3),
                "iterations": len(its),
                "usage": {**usage, "by_model": {}, "by_depth": {}},
            }
        )
    return records


def write_synthetic_trace(path: str | Path, **kwargs: Any) -> Path:
    """Write :func:`synthetic_records` as a ``.jsonl`` file and return its path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as fh:
        for rec in synthetic_records(**kwargs):
            fh.write(json.dumps(rec) + "\n")
    return p
