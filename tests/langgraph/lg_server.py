"""The real in-memory LangGraph Server (``langgraph dev``) as a subprocess for the tests.

It serves the repository's ``langgraph.json`` from a temporary working directory (the
in-mem server persists threads and checkpoints to ``.langgraph_api/`` there), on
127.0.0.1, with nothing phoning home. It runs in its own session: ``stop()`` signals
that process group only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from rlm_engine.scripted import ScriptedServer

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "langgraph.json"
LANGGRAPH = Path(sys.executable).with_name("langgraph")

#: No telemetry, no version check, no tracing: the machine has no internet.
QUIET_ENV = {
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    "LANGSMITH_API_KEY": "",
    "LANGGRAPH_CLOUD_LICENSE_KEY": "",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LangGraphDev:
    """``langgraph dev --no-browser --no-reload`` in ``workdir`` with ``env`` added."""

    def __init__(self, workdir: Path, env: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.env = {**os.environ, **QUIET_ENV, **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log = workdir / "langgraph-dev.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> LangGraphDev:
        self.port = free_port()
        cmd = [
            str(LANGGRAPH),
            "dev",
            "--no-browser",
            "--no-reload",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--config",
            str(CONFIG),
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"langgraph dev exited: {self.tail()}")
            try:
                if httpx.get(f"{self.url}/ok", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"langgraph dev did not answer in {timeout} s: {self.tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (uvicorn shuts down and the in-mem runtime writes its files), then
        SIGKILL if it does not exit; only this server's own process group."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def server_env(lm: ScriptedServer, context_dir: Path) -> dict[str, str]:
    """What an operator sets: the model server, the models, where contexts may be read."""
    return {
        "RLM_BACKEND": "openai",
        "RLM_BASE_URL": lm.base_url,
        "RLM_API_KEY": "sk-test",
        "RLM_MODEL": "scripted-root",
        "RLM_SUB_MODEL": "scripted-sub",
        "RLM_MAX_RETRIES": "1",
        "RLM_CONTEXT_DIRS": str(context_dir),
    }


def subs(lm: ScriptedServer) -> int:
    """Sub-calls the scripted server answered."""
    return sum(1 for r in lm.stats.log if r.model == "scripted-sub" and r.status == 200)


def roots(lm: ScriptedServer) -> int:
    """Root calls the scripted server answered."""
    return sum(1 for r in lm.stats.log if r.model == "scripted-root" and r.status == 200)
