"""Landlock self-restriction for the REPL worker (Linux >= 5.13). Standard library only.

The worker calls ``restrict`` on itself after loading the context and before the first cell.
It limits file access to an allow-list (read-only system dirs, the writable work dir), denies
every TCP bind/connect (kernel ABI >= 4, so not even loopback servers are reachable) and,
on ABI >= 6, scopes signals and abstract unix sockets to the worker's own domain (it cannot
signal the host even under the same uid). Unsupported features are skipped and reported,
never faked: ``restrict`` returns what was actually enforced.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from typing import Any

_SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Filesystem access rights and the ABI version that introduced them.
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_ABI1_FS = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX, SCOPE_SIGNAL = 1 << 0, 1 << 1


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI version, 0 when unavailable (old kernel, seccomp-blocked)."""
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        return 0
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    version = libc.syscall(
        ctypes.c_long(numbers[0]),
        None,
        ctypes.c_size_t(0),
        ctypes.c_uint32(_CREATE_RULESET_VERSION),
    )
    return max(int(version), 0)


def _fs_rights(abi: int) -> int:
    rights = _ABI1_FS
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def restrict(read_paths: list[str], write_paths: list[str]) -> dict[str, Any]:
    """Allow reading ``read_paths`` and everything on ``write_paths``; deny the rest.

    Returns ``{"abi": n, "filesystem": bool, "tcp": bool, "scoped": bool}``.
    """
    abi = abi_version()
    report: dict[str, Any] = {"abi": abi, "filesystem": False, "tcp": False, "scoped": False}
    if abi < 1:
        return report
    create, add_rule, restrict_self = _SYSCALLS[platform.machine()]
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    handled_fs = _fs_rights(abi)
    handled_net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL if abi >= 6 else 0
    attr = struct.pack("=QQQ", handled_fs, handled_net, scoped)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    buf = ctypes.create_string_buffer(attr[:size], size)
    ruleset = libc.syscall(ctypes.c_long(create), buf, ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        read_rights = EXECUTE | READ_FILE | READ_DIR
        for path in read_paths:
            _allow(libc, add_rule, ruleset, path, read_rights)
        for path in write_paths:
            _allow(libc, add_rule, ruleset, path, handled_fs)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(ctypes.c_long(restrict_self), ruleset, ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    report.update(filesystem=True, tcp=bool(handled_net), scoped=bool(scoped))
    return report


def _allow(libc: ctypes.CDLL, add_rule: int, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a path that does not exist needs no rule
    try:
        if not os.path.isdir(path):
            rights &= _FILE_RIGHTS
        attr = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd), 12)
        if libc.syscall(ctypes.c_long(add_rule), ruleset, _RULE_PATH_BENEATH, attr, 0) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
    finally:
        os.close(fd)
