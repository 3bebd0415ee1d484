"""A context by reference: a file the server reads, or an item in the LangGraph store.

Through LangGraph Server a context given inline travels as JSON in the request, is written
into the thread's input checkpoint and stays in the run's state. ``context_ref`` replaces it
with a few bytes that say where the context is; the graph reads it only when it builds a
REPL (a new conversation, or a rebuild after a restart), never on ordinary steps:

- ``{"path": "/data/contracts/2025.txt"}``: a file the server can read, as text (UTF-8;
  ``"format": "json"`` parses it as JSON instead). Only files under a directory listed in
  ``RLM_CONTEXT_DIRS`` (``os.pathsep``-separated) are read, after symlinks are resolved: a
  caller of the API must not be able to read the server's own files into a model's REPL.
- ``{"store": {"namespace": ["docs"], "key": "contract-7"}}``: the ``"context"`` field of
  that item in the graph's LangGraph store (``client.store.put_item(["docs"], "contract-7",
  {"context": ...})``; ``"field"`` names another field).

A reference stays the thread's context for follow-up turns. The conversation continues in the
same REPL while the reference's version is unchanged (a file's size and modification time,
a store item's ``updated_at``); a changed file or item starts a new conversation, as a new
inline context does. When both are in the state, ``context_ref`` wins; pass
``"context_ref": None`` to go back to an inline ``context``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from typing_extensions import TypedDict

#: Directories a ``{"path": ...}`` reference may point into.
DIRS_ENV = "RLM_CONTEXT_DIRS"


class StoreRef(TypedDict, total=False):
    """An item of the LangGraph store: ``namespace`` (list of str), ``key``, and the
    ``field`` of the item's value that holds the context (default ``"context"``)."""

    namespace: list[str]
    key: str
    field: str


class ContextRef(TypedDict, total=False):
    """Where the context is: ``path`` (and ``format``: ``"text"`` or ``"json"``) or ``store``."""

    path: str
    format: str
    store: StoreRef


class ContextRefError(ValueError):
    """A reference that is malformed, not allowed, or points at nothing."""


def allowed_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    env = os.environ if env is None else env
    raw = env.get(DIRS_ENV, "")
    return [Path(p).resolve() for p in raw.split(os.pathsep) if p.strip()]


def validate(ref: Any) -> ContextRef:
    """``ref`` checked for shape (not yet for existence)."""
    if not isinstance(ref, Mapping) or ("path" in ref) == ("store" in ref):
        raise ContextRefError(
            "context_ref must be {'path': '/file/the/server/reads'} or "
            f"{{'store': {{'namespace': [...], 'key': '...'}}}}, got {ref!r}"
        )
    if "path" in ref:
        if not isinstance(ref["path"], str) or not ref["path"]:
            raise ContextRefError(f"context_ref path must be a non-empty string, got {ref!r}")
        if ref.get("format", "text") not in ("text", "json"):
            raise ContextRefError(f"context_ref format must be 'text' or 'json', got {ref!r}")
    else:
        store = ref["store"]
        ok = (
            isinstance(store, Mapping)
            and isinstance(store.get("key"), str)
            and isinstance(store.get("namespace"), list | tuple)
            and all(isinstance(p, str) for p in store["namespace"])
        )
        if not ok:
            raise ContextRefError(
                f"context_ref store must be {{'namespace': ['a', 'b'], 'key': 'k'}}, got {ref!r}"
            )
    return dict(ref)  # type: ignore[return-value]


def _path(ref: Mapping[str, Any], env: Mapping[str, str] | None) -> Path:
    dirs = allowed_dirs(env)
    if not dirs:
        raise ContextRefError(
            f"context_ref {{'path': {ref['path']!r}}}: this server reads no files; its operator "
            f"lists the directories contexts may come from in {DIRS_ENV} (e.g. {DIRS_ENV}=/data)"
        )
    path = Path(ref["path"]).expanduser().resolve()
    if not any(path.is_relative_to(d) for d in dirs):
        raise ContextRefError(
            f"context_ref path {ref['path']!r} is outside the directories this server reads "
            f"({', '.join(map(str, dirs))}; set by {DIRS_ENV})"
        )
    if not path.is_file():
        raise ContextRefError(f"context_ref path {ref['path']!r}: no such file on the server")
    return path


def _store_item(ref: Mapping[str, Any], store: Any) -> Any:
    spec = ref["store"]
    if store is None:
        raise ContextRefError(
            "context_ref names a store item, but this graph runs without a LangGraph store "
            "(compile it with store=..., or serve it with LangGraph Server)"
        )
    item = store.get(tuple(spec["namespace"]), spec["key"])
    if item is None:
        raise ContextRefError(
            f"context_ref: no store item {spec['key']!r} in namespace {list(spec['namespace'])}"
        )
    return item


def version(ref: Mapping[str, Any], store: Any, env: Mapping[str, str] | None = None) -> str:
    """A digest of the reference and its target's version, without reading the content."""
    ref = validate(ref)
    if "path" in ref:
        path = _path(ref, env)
        st = path.stat()
        stamp: Any = [str(path), st.st_size, st.st_mtime_ns, ref.get("format")]
    else:
        item = _store_item(ref, store)
        stamp = [ref["store"], str(item.updated_at)]
    data = json.dumps(["ref", stamp], sort_keys=True, default=str).encode()
    return hashlib.sha256(data).hexdigest()


def load(ref: Mapping[str, Any], store: Any, env: Mapping[str, str] | None = None) -> Any:
    """The context a reference points at."""
    ref = validate(ref)
    if "path" in ref:
        path = _path(ref, env)
        try:
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError as e:
            raise ContextRefError(f"context_ref path {ref['path']!r}: {e.strerror or e}") from e
        if ref.get("format") == "json":
            try:
                return json.loads(text)
            except json.JSONDecodeError as e:
                raise ContextRefError(f"context_ref path {ref['path']!r} is not JSON: {e}") from e
        return text
    field = ref["store"].get("field", "context")
    value = _store_item(ref, store).value
    if field not in value:
        raise ContextRefError(
            f"context_ref: store item {ref['store']['key']!r} has no field {field!r} "
            f"(its fields: {sorted(value)})"
        )
    return value[field]


class ContextView(Mapping[str, Any]):
    """The graph state, with ``context`` read from ``context_ref`` the first time it is used.

    The session registry reads ``state["context"]`` only to build a REPL, and asks
    :meth:`fingerprint` to tell whether a follow-up turn may keep the thread's REPL; ordinary
    steps read neither, so they never load the context.
    """

    def __init__(self, state: Mapping[str, Any], store: Any = None) -> None:
        self._state = state
        self._store = store
        self._ref = state.get("context_ref")
        if self._ref is not None:
            validate(self._ref)
        self._loaded = False
        self._value: Any = None

    @property
    def ref(self) -> ContextRef | None:
        return self._ref

    def __getitem__(self, key: str) -> Any:
        if key == "context" and self._ref is not None:
            if not self._loaded:
                self._value, self._loaded = load(self._ref, self._store), True
            return self._value
        return self._state[key]

    def __iter__(self) -> Iterator[str]:
        yield from self._state
        if self._ref is not None and "context" not in self._state:
            yield "context"

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        return (key == "context" and self._ref is not None) or key in self._state

    def fingerprint(self) -> str | None:
        """The reference's version digest, or None for an inline context."""
        return None if self._ref is None else version(self._ref, self._store)


__all__ = [
    "DIRS_ENV",
    "ContextRef",
    "ContextRefError",
    "ContextView",
    "StoreRef",
    "allowed_dirs",
    "load",
    "validate",
    "version",
]
