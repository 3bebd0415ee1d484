"""``environment="command"`` over ``docker run -i --rm`` on the local test image: the box a
user would build for it (no network, read-only root, a 64 MB tmpfs ``/tmp`` for the work
dir and context, an unprivileged uid, pids and memory limits), and how a test finds the
containers it started.

Shared by tests/test_remote_sandbox_command_docker.py and the adversarial suite
(tests/security/). The image is the one the ``docker`` tests use (``RLM_DOCKER_IMAGE``,
default ``rlm-sandbox:test``, built by scripts/docker-test-image.sh); as there, a missing
daemon or image fails the tests unless RLM_TESTS_ALLOW_NO_DOCKER=1 (tests/env_support.py).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time

IMAGE = os.environ.get("RLM_DOCKER_IMAGE", "rlm-sandbox:test")
LABEL = "rlm-test-command"
#: One run of the tests labels its containers with this, so leftovers are its own.
RUN = secrets.token_hex(6)
#: An unused uid (like the ``docker`` environment's), so the worker's process limit
#: counts only the box's processes.
UID = 64000 + secrets.randbelow(1000)


def docker_run(image: str = IMAGE, tmp_mb: int = 64) -> list[str]:
    """The command prefix: each worker life is a fresh container, removed when it ends."""
    return [
        "docker", "run", "-i", "--rm", "--pull", "never",
        "--network", "none",
        "--read-only",
        "--tmpfs", f"/tmp:rw,nosuid,nodev,size={tmp_mb}m,mode=1777",
        "--user", f"{UID}:{UID}",
        "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges",
        "--pids-limit", "64",
        "--memory", "1g", "--memory-swap", "1g",
        "--label", f"{LABEL}={RUN}",
        image,
    ]  # fmt: skip


def containers(container_id: str | None = None) -> list[str]:
    """Ids of this run's containers (any state), or whether ``container_id`` exists."""
    filters = ["--filter", f"label={LABEL}={RUN}"]
    if container_id:
        filters += ["--filter", f"id={container_id}"]
    out = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc", *filters],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return out.split()


def wait_gone(container_id: str | None = None, seconds: float = 20.0) -> list[str]:
    """Poll until the containers are removed (``--rm`` is done by the daemon once the
    container exits); what is left at the deadline. A deadline, not a timing assertion."""
    deadline = time.monotonic() + seconds
    while (left := containers(container_id)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def remove_leftovers() -> None:
    """Force-remove this run's containers (only after a failed check, to keep the daemon clean)."""
    ids = containers()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60, check=False)
