"""``environment="auto"`` (the default): the strongest isolation that works on this machine.

Model-written code reads untrusted documents, so by default it must leave the host
process. ``auto`` picks ``sandbox`` (bubblewrap: namespaces, no network, a read-only view
of the system) where bwrap is installed and really starts a worker here, else
``subprocess`` (clean environment, own work dir and uid, rlimits, Landlock where the kernel
has it). It never falls back to ``local`` on its own: when neither works, the error says so
and names ``environment="local"`` (trusted documents only) as the explicit choice.

The decision is made once per process by starting each candidate for real and running one
cell (a missing bwrap, disabled user namespaces or an interpreter the worker uid cannot run
all show up there, with the error the user would get), and is then cached: about 60 ms,
paid by the first completion only.
"""

from __future__ import annotations

import threading

#: The name that asks for this choice.
AUTO = "auto"
#: Candidates, strongest first. ``docker`` is not among them: it needs an image and a
#: daemon, i.e. set-up, and costs ~300 ms per completion.
PREFERENCE = ("sandbox", "subprocess")

_lock = threading.Lock()
_choice: str | None = None
_rejected: dict[str, str] = {}
_decided = False


def _probe_now(name: str) -> str | None:
    from rlm_engine.aio import run_sync
    from rlm_engine.environments.probe import probe

    # A short start-up bound: a candidate that hangs here must not stall the first run.
    return run_sync(probe(name, start_timeout=15.0))


def resolve_auto() -> str:
    """The environment ``auto`` stands for here (probed on first use, then cached)."""
    global _choice, _decided
    with _lock:
        if not _decided:
            for name in PREFERENCE:
                reason = _probe_now(name)
                if reason is None:
                    _choice = name
                    break
                _rejected[name] = reason
            _decided = True
        if _choice is None:
            why = "; ".join(f"{name}: {reason}" for name, reason in _rejected.items())
            raise RuntimeError(
                "environment='auto' found no isolated environment that works on this "
                f"machine ({why}). Install bubblewrap (apt-get install -y bubblewrap) or fix "
                "the error above, pick one with environment='docker', or run the code in "
                "this process with environment='local' (trusted documents only)."
            )
        return _choice


def auto_decision() -> dict[str, object]:
    """What ``auto`` decided and why the stronger candidates were passed over (for reports)."""
    with _lock:
        return {"decided": _decided, "environment": _choice, "rejected": dict(_rejected)}


def forget_decision() -> None:
    """Probe again on the next use (after installing bubblewrap, say; tests use it too)."""
    global _choice, _decided
    with _lock:
        _choice, _decided = None, False
        _rejected.clear()


__all__ = ["AUTO", "PREFERENCE", "auto_decision", "forget_decision", "resolve_auto"]
