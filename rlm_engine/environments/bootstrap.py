"""How the host starts a worker on any ``python3``: a tiny ``-c`` program plus a source bundle.

The bootstrap reads one protocol frame from fd 0 holding the sources of ``protocol.py``,
``repl_core.py``, ``landlock.py`` and ``worker.py``, installs them as modules and calls ``worker.main()``.
Nothing is copied into the worker's file system, so the same start-up works for a local
process, a bubblewrap sandbox with a read-only root and a container from a stock image.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from rlm_engine.environments import protocol

_HERE = Path(__file__).resolve().parent
_MODULES = ("protocol", "repl_core", "landlock", "worker")

BOOTSTRAP_CODE = """\
import json, os, sys, types
def _read(n):
    data = b""
    while len(data) < n:
        chunk = os.read(0, n - len(data))
        if not chunk:
            raise SystemExit("rlm worker: the host closed the channel during bootstrap")
        data += chunk
    return data
_bundle = json.loads(_read(int.from_bytes(_read(8), "big")))
for _name, _source in _bundle["modules"]:
    _module = types.ModuleType(_name)
    _module.__file__ = "<rlm " + _name + ">"
    sys.modules[_name] = _module
    exec(compile(_source, _module.__file__, "exec"), _module.__dict__)
sys.modules[_bundle["main"]].main()
"""


@functools.cache
def bundle_frame() -> bytes:
    """The frame the bootstrap expects first: module sources in import order."""
    modules = [(name, (_HERE / f"{name}.py").read_text(encoding="utf-8")) for name in _MODULES]
    body = json.dumps({"modules": modules, "main": "worker"}).encode("utf-8")
    return protocol.HEADER.pack(len(body)) + body


def worker_command(python: str) -> list[str]:
    """argv that runs the worker: isolated mode (``-I``) ignores PYTHON* variables and cwd."""
    return [python, "-I", "-c", BOOTSTRAP_CODE]
