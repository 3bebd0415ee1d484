"""Adversarial suite: code a prompt-injected model might write, against every environment.

Each test runs the attack, classifies what actually happened (from evidence on the host:
files, sockets, processes, server logs) and asserts the outcome in ``EXPECTED``. The host
(this pytest process) must survive every attack, the environment must report clearly, and
the fixtures check that no worker process or container outlives ``close()``.

``command`` runs over ``docker run -i --rm --network none --read-only`` with a 64 MB
tmpfs ``/tmp``, an unused uid and a pids limit (tests/command_docker.py): its rows hold
because that box provides no network, no host files and a bounded disk, the host adds the
worker's rlimits and clean environment, and the worker, as PID 1 of its container, stops
what a cell left running. ``command`` itself adds nothing beyond the box: over a box
without these (ssh to a shared host, ``docker exec`` into a running container) network,
files, disk and leftover processes are that box's, as the README's table says.

``local`` is not a sandbox: its rows assert the honest, unsafe outcome. Attacks that would
damage the machine running the tests (fork bomb, killing the parent, raw fd spam into the
test runner) are not run against ``local`` at all; the README lists them as unprotected.
"""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from security_harness import Factory, env_kwargs, record, require

from rlm_engine import RLM
from rlm_engine.environments import HostFunction

ALL = ["local", "subprocess", "sandbox", "docker", "command"]
ISOLATED = ["subprocess", "sandbox", "docker", "command"]
SAFE = {"subprocess": "blocked", "sandbox": "blocked", "docker": "blocked", "command": "blocked"}

EXPECTED: dict[str, dict[str, str]] = {
    "read API key from env": {**SAFE, "local": "leaked"},
    "read host file": {**SAFE, "local": "leaked"},
    "write outside work dir": {**SAFE, "local": "written"},
    "TCP to 127.0.0.1 server": {**SAFE, "local": "connected"},
    "more llm_query calls than budget": {**SAFE, "local": "blocked"},
    "fork bomb": SAFE,
    "allocate 8 GB": {**SAFE, "local": "allocated"},
    "infinite loop": {**SAFE, "local": "blocked"},
    "1 GB print spam": {**SAFE, "local": "blocked"},
    "1 GB raw fd spam": SAFE,
    "kill parent": SAFE,
    "reach host objects": {**SAFE, "local": "leaked"},
    "fill the disk": SAFE,
}

HOST_SECRET = "sk-host-only-" + secrets.token_hex(8)


def every(names: list[str]) -> Any:
    return pytest.mark.parametrize("make_env", names, indirect=True)


def env_name(request: pytest.FixtureRequest) -> str:
    return request.node.callspec.params["make_env"]


def check(request: pytest.FixtureRequest, attack: str, outcome: str, detail: str = "") -> None:
    name = env_name(request)
    record(name, attack, outcome, detail)
    assert outcome == EXPECTED[attack][name], f"{attack} in {name}: {outcome} ({detail})"


# -- secrets and files -------------------------------------------------------------------------

SCAN_ENV = """
import os
hits = []
if "sk-test-secret" in repr(dict(os.environ)):
    hits.append("os.environ")
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if b"sk-test-secret" in f.read():
                    hits.append(f"/proc/{pid}/environ")
        except OSError:
            pass
print("LEAKED" if hits else "SAFE", hits[:3])
"""


@every(ALL)
async def test_read_api_key_from_environment(
    make_env: Factory, request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    env = await make_env("")
    r = await env.execute(SCAN_ENV)
    assert r.error is None, r.error
    check(
        request, "read API key from env", "leaked" if "LEAKED" in r.stdout else "blocked", r.stdout
    )


@pytest.fixture
def host_secret_file() -> Iterator[tuple[Path, str]]:
    """A file only the host user may read, in its home (/root when running as root)."""
    token = secrets.token_hex(12)
    path = Path.home() / f"rlm-secret-{token[:8]}.txt"
    path.write_text(f"secret {token}\n")
    path.chmod(0o600)
    try:
        yield path, token
    finally:
        path.unlink(missing_ok=True)


@every(ALL)
async def test_read_host_file(
    make_env: Factory, request: Any, host_secret_file: tuple[Path, str]
) -> None:
    path, token = host_secret_file
    env = await make_env("")
    code = (
        "hits = []\n"
        f"for p in [{str(path)!r}, '/etc/shadow']:\n"
        "    try:\n"
        "        hits.append((p, open(p).read()[:60]))\n"
        "    except OSError as e:\n"
        "        print(p, type(e).__name__)\n"
        "print(hits)"
    )
    r = await env.execute(code)
    assert r.error is None, r.error
    leaked = token in r.stdout or "root:" in r.stdout
    check(request, "read host file", "leaked" if leaked else "blocked", r.stdout)


@every(ALL)
async def test_write_outside_work_dir(
    make_env: Factory, request: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = Path(f"/tmp/rlm-escape-{secrets.token_hex(6)}")  # /tmp: writable by every uid
    monkeypatch.chdir(tmp_path)  # `local` has no work dir of its own: it writes in the cwd
    env = await make_env("")
    try:
        r = await env.execute(
            f"try:\n    open({str(target)!r}, 'w').write('pwned')\n"
            "except OSError as e:\n    print(type(e).__name__, e)"
        )
        assert r.error is None, r.error
        # The work dir itself stays writable.
        ok = await env.execute(
            "open('notes.txt', 'w').write('fine')\nprint(open('notes.txt').read())"
        )
        assert ok.stdout == "fine\n"
        check(
            request, "write outside work dir", "written" if target.exists() else "blocked", r.stdout
        )
    finally:
        target.unlink(missing_ok=True)


# -- network -------------------------------------------------------------------------------------


class LoopbackServer:
    """A TCP server on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@every(ALL)
async def test_tcp_connect_to_loopback_server(make_env: Factory, request: Any) -> None:
    server = LoopbackServer()
    try:
        env = await make_env("")
        r = await env.execute(
            "import socket\ntry:\n"
            f"    socket.create_connection(('127.0.0.1', {server.port}), timeout=3).close()\n"
            "    print('CONNECTED')\n"
            "except OSError as e:\n    print(type(e).__name__, e)"
        )
        assert r.error is None, r.error
    finally:
        server.close()
    outcome = "connected" if server.accepted or "CONNECTED" in r.stdout else "blocked"
    check(request, "TCP to 127.0.0.1 server", outcome, r.stdout)


# -- budget (through the engine) ---------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_more_llm_calls_than_the_budget(
    name: str, scripted_model: Any, scripted_server: Any, openai_kwargs: dict
) -> None:
    require(name)
    scripted_model.add_rule(
        lambda r: r.is_rlm_root,
        [
            "```repl\nanswers = [llm_query(f'q{i}') for i in range(20)]\n"
            "print(sum(a.startswith('Error') for a in answers))\n```"
        ]
        * 3,
    )
    rlm = RLM(
        backend="openai",
        backend_kwargs=openai_kwargs,
        environment=name,
        environment_kwargs=env_kwargs(name),
        max_llm_calls=5,
    )
    res = rlm.completion("ctx", query="go")
    served = [r for r in scripted_server.stats.log if r.path.endswith("/chat/completions")]
    outcome = "blocked" if len(served) <= 5 and res.status == "budget" else "exceeded"
    record(
        name,
        "more llm_query calls than budget",
        outcome,
        f"{len(served)} LM calls served for max_llm_calls=5; status={res.status}",
    )
    assert outcome == EXPECTED["more llm_query calls than budget"][name]
    # 1 root call + 4 sub-calls fit; the other 16 llm_query calls got a clear refusal.
    assert "[block 1]\n16\n" in res.iterations[0].feedback
    refused = [c for c in res.iterations[0].code_blocks[0].subcalls if c.error]
    assert len(refused) == 16 and all("budget exhausted" in c.response for c in refused)


# -- resources -----------------------------------------------------------------------------------

FORK_BOMB = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""

LIST_MY_PROCESSES = """
import os
for pid in sorted(p for p in os.listdir('/proc') if p.isdigit()):
    try:
        with open(f'/proc/{pid}/status') as f:
            fields = dict(l.split(':', 1) for l in f if ':' in l)
        if int(fields['Uid'].split()[0]) == os.getuid() and not fields['State'].strip().startswith('Z'):
            print(pid, fields['Name'].strip(), fields['State'].strip().split()[0])
    except (OSError, KeyError, ValueError):
        pass
"""


@every(ISOLATED)
async def test_fork_bomb(make_env: Factory, request: Any) -> None:
    env = await make_env("ctx", timeout=3)
    r = await env.execute(FORK_BOMB)
    # Either the interrupt lands (state kept) or, when the bomb starves the worker of CPU
    # past the grace period, the worker is killed and restarted; both are reported.
    assert r.timed_out or r.crashed, r
    assert "Timeout: the cell exceeded 3 s" in (r.error or "")
    left = await env.execute(LIST_MY_PROCESSES)
    survivors = len(left.stdout.splitlines())
    # The worker itself (plus bubblewrap's init in the sandbox's PID namespace).
    contained = survivors <= 2 and (await env.execute("print(context)")).stdout == "ctx\n"
    check(
        request,
        "fork bomb",
        "blocked" if contained else "escaped",
        f"{r.error}; processes of the worker uid after the cell: {left.stdout!r}",
    )


@every(ALL)
async def test_allocate_8gb(make_env: Factory, request: Any) -> None:
    env = await make_env("ctx")
    if env_name(request) == "local":
        # calloc'd and never touched, so the host's RAM is not really consumed.
        r = await env.execute("blob = bytes(8 * 1024**3)\nprint(len(blob))\ndel blob")
        outcome = "allocated" if r.stdout == f"{8 * 1024**3}\n" else "blocked"
    else:
        r = await env.execute("chunks = []\nwhile True:\n    chunks.append(b'x' * (64 << 20))")
        assert not r.crashed, r.error
        outcome = "blocked" if "MemoryError" in (r.error or "") else "allocated"
        assert (await env.execute("del chunks\nprint(context)")).stdout == "ctx\n"
    check(request, "allocate 8 GB", outcome, r.error or r.stdout)


@every(ISOLATED)
async def test_fill_the_disk(make_env: Factory, request: Any) -> None:
    env = await make_env("ctx", timeout=120)  # disk_mb=64 (security_harness.env_kwargs)
    r = await env.execute(
        "import os\nchunk = b'z' * (1 << 20)\nfor i in range(10 * 1024):\n"
        "    with open(f'fill{i}', 'wb') as f:\n        f.write(chunk)"
    )
    left = await env.execute("import os\nprint(sum(os.path.getsize(f) for f in os.listdir('.')))")
    stopped = "disk_mb=64" in (r.error or "") and int(left.stdout) <= 64 << 20
    check(
        request,
        "fill the disk",
        "blocked" if stopped else "filled",
        f"{(r.error or '').splitlines()[-1] if r.error else 'no error'}; "
        f"{int(left.stdout or 0):,} bytes left in the work dir",
    )


@every(ALL)
async def test_infinite_loop(make_env: Factory, request: Any) -> None:
    env = await make_env("ctx")
    r = await env.execute("while True:\n    pass", timeout=2)
    stopped = r.timed_out and (await env.execute("print(context)")).stdout == "ctx\n"
    check(request, "infinite loop", "blocked" if stopped else "ran on", r.error or "")


@every(ALL)
async def test_print_spam_1gb(make_env: Factory, request: Any) -> None:
    env = await make_env("ctx", max_output_chars=100_000, timeout=120)
    r = await env.execute(
        "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)"
    )
    assert r.error is None, r.error
    capped = len(r.stdout) < 120_000 and "characters of output dropped" in r.stdout
    check(
        request,
        "1 GB print spam",
        "blocked" if capped else "flooded",
        f"{len(r.stdout):,} characters reached the host",
    )


@every(ISOLATED)
async def test_raw_fd_spam_1gb(make_env: Factory, request: Any) -> None:
    env = await make_env("ctx", max_output_chars=100_000, timeout=120)
    r = await env.execute(
        "import os\nchunk = b'y' * (1 << 20)\nfor _ in range(1024):\n    os.write(1, chunk)"
    )
    assert r.error is None, r.error
    capped = len(r.stdout) < 120_000 and "bytes of process-level output dropped" in r.stdout
    check(
        request,
        "1 GB raw fd spam",
        "blocked" if capped else "flooded",
        f"{len(r.stdout):,} characters reached the host",
    )


# -- the host process --------------------------------------------------------------------------

KILL_PARENT = """
import os, signal
for target in (os.getppid(), -1):
    try:
        os.kill(target, signal.SIGKILL)
        print(target, 'signalled')
    except OSError as e:
        print(target, type(e).__name__)
"""


@every(ISOLATED)
async def test_kill_parent(make_env: Factory, request: Any) -> None:
    env = await make_env("ctx")
    r = await env.execute(KILL_PARENT)
    # We are the host: still running. The REPL answers again (restarted if it killed itself).
    after = await env.execute("print(context)")
    survived = after.stdout == "ctx\n"
    check(
        request,
        "kill parent",
        "blocked" if survived else "host damaged",
        (r.error or r.stdout).replace("\n", "; "),
    )


ESCAPE = """
import gc, os, sys
needle = 'sk-host-only-'
def has_secret(values):
    return any(isinstance(v, str) and v.startswith(needle) and len(v) > len(needle) for v in values)
found = []
for obj in gc.get_objects():
    try:
        if isinstance(obj, dict):
            values = list(obj.values())
        elif isinstance(obj, (list, tuple)):
            values = list(obj)
        elif getattr(obj, '__closure__', None):
            values = [c.cell_contents for c in obj.__closure__]
        else:
            continue
        if has_secret(values):
            found.append('gc:' + type(obj).__name__)
    except Exception:
        pass
frame = sys._getframe()
while frame is not None:
    if has_secret(list(frame.f_globals.values()) + list(frame.f_locals.values())):
        found.append('frame')
    frame = frame.f_back
import builtins
if has_secret(vars(builtins).values()):
    found.append('builtins')
try:
    import ctypes
    with open(f'/proc/{os.getppid()}/mem', 'rb'):
        found.append('parent memory readable')
except (OSError, ImportError):
    pass
print('FOUND' if found else 'NOTFOUND', sorted(set(found))[:5])
"""


@every(ALL)
async def test_reach_host_objects(make_env: Factory, request: Any) -> None:
    api_key = HOST_SECRET  # held by the host, like an engine's LM client

    async def llm_query(prompt: str, model: str | None = None) -> str:
        return f"answered with key {api_key[:3]}..."

    # A generous timeout: in `local` the scan walks every object of this test process.
    env = await make_env("ctx", {"llm_query": HostFunction("llm_query", llm_query)}, timeout=120)
    r = await env.execute(ESCAPE)
    assert r.error is None, r.error
    assert HOST_SECRET not in r.stdout
    check(
        request,
        "reach host objects",
        "leaked" if "FOUND" in r.stdout.split()[:1] else "blocked",
        r.stdout,
    )
