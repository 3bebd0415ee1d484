"""How the host starts a worker on any ``python3``: a tiny ``-c`` program plus a source bundle.

The bootstrap reads one protocol frame from fd 0 holding the sources of ``protocol.py``,
``repl_core.py``, ``landlock.py`` and ``worker.py`` (and their bytecode, used when the
worker's interpreter is the host's version), installs them as modules and calls
``worker.main()``.
Nothing is copied into the worker's file system, so the same start-up works for a local
process, a bubblewrap sandbox with a read-only root and a container from a stock image.
"""

from __future__ import annotations

import functools
import json
import marshal
import sys
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
_tag = "%s-%d.%d" % (sys.implementation.cache_tag, *sys.version_info[:2])
_codes = _bundle.get("code", {}) if _bundle.get("tag") == _tag else {}
for _name, _source in _bundle["modules"]:
    _module = types.ModuleType(_name)
    _module.__file__ = "<rlm " + _name + ">"
    sys.modules[_name] = _module
    if _name in _codes:
        import marshal
        _code = marshal.loads(_codes[_name].encode("latin-1"))
    else:
        _code = compile(_source, _module.__file__, "exec")
    exec(_code, _module.__dict__)
sys.modules[_bundle["main"]].main()
"""

#: Bytecode is only reused by an interpreter of the same implementation and version.
CODE_TAG = f"{sys.implementation.cache_tag}-{sys.version_info[0]}.{sys.version_info[1]}"


@functools.cache
def bundle_frame() -> bytes:
    """The frame the bootstrap expects first: module sources in import order, plus their
    bytecode for a worker whose interpreter matches ours (``CODE_TAG``): compiling the
    sources is about 5 ms of every worker's start-up, loading the bytecode a tenth of it.
    Any other interpreter (a docker image's, say) compiles the sources."""
    modules = [(name, (_HERE / f"{name}.py").read_text(encoding="utf-8")) for name in _MODULES]
    code = {
        name: marshal.dumps(compile(source, f"<rlm {name}>", "exec")).decode("latin-1")
        for name, source in modules
    }
    bundle = {"modules": modules, "main": "worker", "tag": CODE_TAG, "code": code}
    body = json.dumps(bundle).encode("utf-8")
    return protocol.HEADER.pack(len(body)) + body


def worker_command(python: str) -> list[str]:
    """argv that runs the worker: isolated mode (``-I``) ignores PYTHON* variables and cwd."""
    return [python, "-I", "-c", BOOTSTRAP_CODE]
