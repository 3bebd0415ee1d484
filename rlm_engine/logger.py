r"""JSONL trajectories: a metadata line, one line per iteration, a result line.

A file grows with what happened, not with history x iterations: each iteration line holds
only that iteration (never the conversation so far), sub-call prompts keep only their head
and tail (they embed context chunks), and REPL output is the truncated text the LM saw.
Known secrets (API keys in the environment or given to clients) are redacted.

Writing never fails on text: model output and contexts may hold lone surrogates
(``"\ud800"``) that UTF-8 cannot encode; they are written as JSON ``\uXXXX`` escapes,
which read back as the same string.

A run stopped from outside (Ctrl-C in ``rlm run``) ends with :meth:`RLMLogger.log_interrupted`:
the iteration in progress, rebuilt by an :class:`IterationRecorder` from the run's progress
events, and a result line with status ``"interrupted"``.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlm_engine import RLMResult, RLMSession, RLMState
    from rlm_engine.config import RLMConfig
    from rlm_engine.resources import RunResources
    from rlm_engine.types import Iteration

_KEY_PATTERN = re.compile(
    r"\b(sk-[A-Za-z0-9_\-]{16,}|sk-ant-[A-Za-z0-9_\-]{16,}|AKIA[0-9A-Z]{16})\b"
)
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)


def _known_secrets() -> list[str]:
    return [v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8]


def redact(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s in text:
            text = text.replace(s, "[REDACTED]")
    return _KEY_PATTERN.sub("[REDACTED]", text)


class RLMLogger:
    """Writes ``<log_dir>/rlm_<time>_<run_id>.jsonl`` for each top-level completion."""

    def __init__(
        self, log_dir: str | os.PathLike[str], *, secrets: list[str] | None = None
    ) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.extra_secrets = list(secrets or [])
        self._paths: dict[str, Path] = {}
        self._lock = threading.Lock()
        self.last_path: Path | None = None

    def _write(self, run_id: str, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, default=str)
        line = redact(line, self.extra_secrets + _known_secrets())
        with self._lock:
            path = self._paths.get(run_id)
            if path is None:
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
                path = self.log_dir / f"rlm_{stamp}_{run_id}.jsonl"
                self._paths[run_id] = path
            self.last_path = path
            # backslashreplace writes a lone surrogate as \udXXX: a JSON escape of itself.
            with path.open("a", encoding="utf-8", errors="backslashreplace") as f:
                f.write(line + "\n")

    def start_run(self, session: RLMSession) -> None:
        st, cfg = session.state, session.config
        config = _config_record(cfg, session.shared)
        config["environment"] = session.env.name  # what ran ("auto" resolved)
        self._write(
            st.run_id,
            {
                "type": "metadata",
                "version": 1,
                "run_id": st.run_id,
                "started_at": datetime.fromtimestamp(st.started_at, UTC).isoformat(),
                "query": st.query,
                "context": st.context_info,
                "config": config,
                "system_prompt": st.system,
            },
        )

    def start_direct(
        self,
        result: RLMResult,
        config: RLMConfig,
        shared: RunResources,
        *,
        system_prompt: str,
        root_model: str | None = None,
    ) -> None:
        """The metadata line of a direct run (``mode="direct"|"auto"``, one LM call, no
        session): a trace file then reads like a loop's, with ``path`` saying which ran."""
        record = _config_record(config, shared)
        if root_model:
            record["root_model"] = root_model
        self._write(
            result.run_id,
            {
                "type": "metadata",
                "version": 1,
                "run_id": result.run_id,
                "started_at": datetime.now(UTC).isoformat(),
                "query": result.query,
                "context": result.context_info,
                "config": record,
                "path": result.path,
                "path_reason": result.path_reason,
                "system_prompt": system_prompt,
            },
        )

    def log_iteration(self, iteration: Iteration, state: RLMState) -> None:
        self._write(
            state.run_id,
            {
                "type": "iteration",
                "run_id": state.run_id,
                "depth": state.depth,
                **iteration.to_dict(),
            },
        )

    def log_result(self, result: RLMResult) -> None:
        self._write(result.run_id, {"type": "result", **result.to_dict()})

    def log_interrupted(
        self,
        session: RLMSession,
        partial: dict[str, Any] | None = None,
        reason: str = "interrupted by the user (Ctrl-C)",
    ) -> None:
        """End the trace of a run stopped from outside: the iteration it was in (``partial``,
        from :meth:`IterationRecorder.partial`) and a result line with status
        ``"interrupted"``, usage as counted so far."""
        st = session.state
        if partial is not None:
            self._write(st.run_id, {"type": "iteration", "run_id": st.run_id, **partial})
        usage = session.shared.usage.to_dict()
        usage.pop("records", None)
        where = f" during iteration {partial['index']}" if partial is not None else ""
        self._write(
            st.run_id,
            {
                "type": "result",
                "run_id": st.run_id,
                "status": "interrupted",
                "response": None,
                "partial_answer": st.partial_answer,
                "error": f"{reason}{where}",
                "duration": time.time() - st.started_at,
                "iterations": st.iteration,
                "usage": usage,
            },
        )


def _config_record(cfg: RLMConfig, shared: RunResources) -> dict[str, Any]:
    """What a trace's metadata line says about the run's clients and limits."""
    return {
        "root_model": shared.root_client.model_name,
        "sub_model": shared.sub_client.model_name,
        "root_client": shared.root_client.describe(),
        "sub_client": shared.sub_client.describe(),
        "max_iterations": cfg.run.max_iterations,
        "max_depth": cfg.run.max_depth,
        "max_concurrency": cfg.run.max_concurrency,
        "max_llm_calls": cfg.run.max_llm_calls,
        "max_total_tokens": cfg.run.max_total_tokens,
        "max_cost": cfg.run.max_cost,
        "run_timeout": cfg.run.run_timeout,
        "max_tokens": cfg.reply.max_tokens,
        "timeout": cfg.reply.timeout,
        "mode": cfg.run.mode,
    }


class IterationRecorder:
    """The top-level iteration in progress, rebuilt from the run's progress events.

    Finished iterations reach the trace through ``log_iteration``; this keeps what the
    current one has done so far (the root's response, code blocks run or running, the
    sub-calls that returned) so that :meth:`RLMLogger.log_interrupted` can record it. Pass
    it as (or call it from) the run's ``on_event``. Events carry the first 200 characters
    of a sub-call's prompt and answer, so those are all a partial iteration keeps.
    """

    def __init__(self) -> None:
        self._current: dict[str, Any] | None = None
        self._lock = threading.Lock()  # sub-call events may come from REPL threads

    def __call__(self, event: dict[str, Any]) -> None:
        if int(event.get("depth") or 0) != 0:
            return  # a child RLM's own turns: its rlm_query call is recorded when it returns
        kind = event.get("event")
        with self._lock:
            if kind == "iteration_start":
                self._current = {
                    "index": event.get("iteration"),
                    "response": "",
                    "code_blocks": [],
                    "final_answer": None,
                    "interrupted": True,
                    "started": time.perf_counter(),
                    "open": {},  # sub-calls started and not ended, per function
                }
            elif kind == "iteration_end":
                self._current = None
            elif self._current is not None:
                self._apply(kind, event, self._current)

    @staticmethod
    def _apply(kind: Any, event: dict[str, Any], it: dict[str, Any]) -> None:
        blocks: list[dict[str, Any]] = it["code_blocks"]
        if kind == "root_response":
            it["response"] = event.get("text") or ""
            it["input_tokens"] = event.get("input_tokens") or 0
            it["output_tokens"] = event.get("output_tokens") or 0
        elif kind == "code_start":
            blocks.append({"code": event.get("code") or "", "subcalls": [], "interrupted": True})
        elif kind == "code_end" and blocks:
            blocks[-1]["stdout"] = event.get("output") or ""
            blocks[-1]["interrupted"] = False
        elif kind == "subcall_start":
            fn = str(event.get("function") or "")
            it["open"][fn] = it["open"].get(fn, 0) + 1
        elif kind == "subcall_end" and blocks:
            fn = str(event.get("function") or "")
            if it["open"].get(fn):  # rlm_query and replayed calls end without a start
                it["open"][fn] -= 1
            blocks[-1]["subcalls"].append(
                {
                    "function": event.get("function"),
                    "prompt": event.get("prompt") or "",
                    "response": event.get("response") or "",
                    "model": event.get("model"),
                    "depth": 1,
                    "input_tokens": event.get("input_tokens") or 0,
                    "output_tokens": event.get("output_tokens") or 0,
                    "latency": event.get("latency") or 0.0,
                    "error": event.get("error"),
                    "replayed": bool(event.get("replayed")),
                }
            )

    def partial(self) -> dict[str, Any] | None:
        """The iteration in progress as an iteration record, or None between iterations."""
        with self._lock:
            if self._current is None:
                return None
            it = {k: v for k, v in self._current.items() if k not in ("started", "open")}
            it["duration"] = time.perf_counter() - self._current["started"]
            it["code_blocks"] = [dict(b) for b in it["code_blocks"]]
            in_flight = sum(self._current["open"].values())
            running = [b for b in it["code_blocks"] if b["interrupted"]]
            lost = f"; {in_flight} unfinished sub-call(s) were abandoned" if in_flight else ""
            for block in running:
                block["error"] = f"interrupted (Ctrl-C) while this block ran{lost}"
            if not it["response"]:
                note = "interrupted while waiting for the root LM's response"
            elif running:
                note = f"interrupted while code block {len(it['code_blocks'])} ran{lost}"
            else:
                note = "interrupted between the root's response and its code"
            it["interrupted_note"] = note
            return it
