"""JSONL trajectories: a metadata line, one line per iteration, a result line.

A file grows with what happened, not with history x iterations: each iteration line holds
only that iteration (never the conversation so far), sub-call prompts keep only their head
and tail (they embed context chunks), and REPL output is the truncated text the LM saw.
Known secrets (API keys in the environment or given to clients) are redacted.
"""

from __future__ import annotations

import json
import os
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlm_engine import RLMResult, RLMSession, RLMState
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
            with path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")

    def start_run(self, session: RLMSession) -> None:
        st, cfg = session.state, session.config
        self._write(
            st.run_id,
            {
                "type": "metadata",
                "version": 1,
                "run_id": st.run_id,
                "started_at": datetime.fromtimestamp(st.started_at, UTC).isoformat(),
                "query": st.query,
                "context": st.context_info,
                "config": {
                    "root_model": session.shared.root_client.model_name,
                    "sub_model": session.shared.sub_client.model_name,
                    "root_client": session.shared.root_client.describe(),
                    "sub_client": session.shared.sub_client.describe(),
                    "environment": cfg.repl.environment
                    if isinstance(cfg.repl.environment, str)
                    else type(cfg.repl.environment).__name__,
                    "max_iterations": cfg.run.max_iterations,
                    "max_depth": cfg.run.max_depth,
                    "max_concurrency": cfg.run.max_concurrency,
                    "max_llm_calls": cfg.run.max_llm_calls,
                    "max_total_tokens": cfg.run.max_total_tokens,
                    "max_cost": cfg.run.max_cost,
                    "run_timeout": cfg.run.run_timeout,
                    "max_tokens": cfg.reply.max_tokens,
                    "timeout": cfg.reply.timeout,
                },
                "system_prompt": st.system,
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
