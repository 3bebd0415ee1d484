"""The REPL protocol every environment must honour, run against local, subprocess, sandbox
(real bubblewrap) and docker (real daemon, image from scripts/docker-test-image.sh).

An environment that cannot run here fails its tests; set RLM_TESTS_ALLOW_NO_BWRAP=1 or
RLM_TESTS_ALLOW_NO_DOCKER=1 to skip sandbox or docker explicitly (with a visible reason).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from env_support import Factory, environments, require_env

from rlm_engine import RLM
from rlm_engine.environments import (
    Environment,
    HostFunction,
    bootstrap,
    make_environment,
    protocol,
)
from rlm_engine.environments.isolation import processes_of_uid
from rlm_engine.environments.process_worker import ProcessWorkerEnvironment
from rlm_engine.environments.worker_env import WorkerEnvironment

ALL = ["local", "subprocess", "sandbox", "docker"]
ISOLATED = ["subprocess", "sandbox", "docker"]


def env_kwargs(name: str) -> dict[str, Any]:
    if name == "docker":
        return {"image": os.environ.get("RLM_DOCKER_IMAGE", "rlm-sandbox:test")}
    return {}


def require(name: str) -> None:
    require_env(name, env_kwargs(name))


@pytest.fixture
async def make_env(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    async with environments(request.param, env_kwargs(request.param)) as factory:
        yield factory


def every(names: list[str]) -> Any:
    return pytest.mark.parametrize("make_env", names, indirect=True)


def fn(name: str, f: Callable[..., Awaitable[Any]]) -> dict[str, HostFunction]:
    return {name: HostFunction(name, f)}


class Rendezvous:
    """Host calls that finish only once ``n`` of them are in flight at the same time.

    If the environment serialized calls, the first one would wait forever, so reaching the
    rendezvous proves concurrency without measuring time.
    """

    def __init__(self, n: int) -> None:
        self.n, self.in_flight, self.peak, self.invocations = n, 0, 0, 0
        self.event = asyncio.Event()

    async def one(self, prompt: str, model: str | None = None) -> str:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.in_flight >= self.n:
            self.event.set()
        try:
            await asyncio.wait_for(self.event.wait(), 30)
        finally:
            self.in_flight -= 1
        return f"answer:{prompt}"

    async def batched(self, prompts: list[str], model: str | None = None) -> list[str]:
        self.invocations += 1
        return list(await asyncio.gather(*(self.one(p) for p in prompts)))


# -- state and context ---------------------------------------------------------------------


@every(ALL)
async def test_state_persists_across_cells(make_env: Factory) -> None:
    env = await make_env("ctx")
    assert (await env.execute("x = 41\ndef inc(v):\n    return v + 1")).error is None
    r = await env.execute("y = inc(x)\ny")
    assert r.stdout == "42\n" and r.error is None
    assert (await env.execute("SHOW_VARS()")).stdout.splitlines() == [
        "inc: function",
        "x: int",
        "y: int",
    ]
    assert await env.list_variables() == {"inc": "function", "x": "int", "y": "int"}
    assert await env.get_variable("y") == (True, "42")
    assert await env.get_variable("nope") == (False, "")


CONTEXTS = [
    "line one\r\nline two\n\tü ✓ 日本",
    {"doc": ["a", "b"], "n": 3, "nested": {"k": None}},
    ["chunk 0", "chunk 1", "chunk 2"],
    None,
]


@every(ALL)
@pytest.mark.parametrize("context", CONTEXTS, ids=["str", "dict", "list", "none"])
async def test_context_arrives_intact(make_env: Factory, context: Any) -> None:
    env = await make_env(context)
    r = await env.execute("print(repr(context))")
    assert r.error is None
    assert r.stdout == repr(context) + "\n"


@every(ISOLATED)
async def test_large_context_and_large_host_results(make_env: Factory) -> None:
    context = "0123456789" * 2_000_000  # 20 MB: goes through the context file

    async def big(n: int) -> str:
        return "z" * n

    env = await make_env(context, fn("big", big))
    r = await env.execute("print(len(context), context[-3:], len(big(5_000_000)))")
    assert r.error is None and r.stdout == "20000000 789 5000000\n"


@every(["local", "subprocess", "sandbox"])
async def test_host_venv_packages_are_importable_read_only(make_env: Factory) -> None:
    env = await make_env("")
    r = await env.execute("import numpy\nprint(int(numpy.arange(5).sum()))")
    assert r.error is None and r.stdout == "10\n"
    if not getattr(env, "in_process", False):
        r = await env.execute("open(numpy.__file__, 'a').write('# tampered')")
        assert "Error" in (r.error or "")


# -- host function calls ---------------------------------------------------------------------


@every(ALL)
async def test_host_calls_pass_arguments_and_errors(make_env: Factory) -> None:
    async def llm_query(prompt: str, model: str | None = None) -> str:
        return f"echo:{prompt}:{model}"

    async def boom() -> str:
        raise ValueError("upstream said no")

    env = await make_env("", {**fn("llm_query", llm_query), **fn("boom", boom)})
    r = await env.execute("print(llm_query('hi', model='m1'))")
    assert r.stdout == "echo:hi:m1\n"
    r = await env.execute(
        "try:\n    boom()\nexcept Exception as e:\n    print(type(e).__name__, e)"
    )
    assert r.stdout == "HostCallError boom failed: ValueError: upstream said no\n"
    assert (await env.execute("boom()")).error.endswith("boom failed: ValueError: upstream said no")


@every(ALL)
async def test_batched_call_is_one_host_call_and_concurrent(make_env: Factory) -> None:
    rv = Rendezvous(8)
    env = await make_env("", fn("llm_query_batched", rv.batched))
    r = await env.execute(
        "out = llm_query_batched([f'p{i}' for i in range(8)])\nprint(out[0], out[7])"
    )
    assert r.error is None and r.stdout == "answer:p0 answer:p7\n"
    assert rv.invocations == 1 and rv.peak == 8


@every(ALL)
async def test_calls_from_threads_in_a_cell_run_concurrently(make_env: Factory) -> None:
    rv = Rendezvous(4)
    env = await make_env("", fn("llm_query", rv.one))
    code = (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "with ThreadPoolExecutor(4) as pool:\n"
        "    out = list(pool.map(llm_query, ['a', 'b', 'c', 'd']))\n"
        "print(out)"
    )
    r = await env.execute(code)
    assert r.error is None and r.stdout == "['answer:a', 'answer:b', 'answer:c', 'answer:d']\n"
    assert rv.peak == 4


# -- FINAL -------------------------------------------------------------------------------------


@every(ALL)
async def test_final_and_final_var(make_env: Factory) -> None:
    env = await make_env("")
    assert (await env.execute("FINAL('the answer')")).final == "the answer"
    assert (await env.execute("print('no final')")).final is None
    assert (await env.execute("ans = [1, 2]\nFINAL_VAR('ans')")).final == "[1, 2]"
    r = await env.execute("FINAL_VAR('missing')")
    assert r.final is None and "no REPL variable named 'missing'" in (r.error or "")


# -- output ------------------------------------------------------------------------------------


@every(ALL)
async def test_output_is_captured_and_truncated(make_env: Factory) -> None:
    env = await make_env("", max_output_chars=1000)
    r = await env.execute("import sys\nprint('x' * 100_000)\nprint('err', file=sys.stderr)")
    assert "characters of output dropped" in r.stdout
    assert len(r.stdout) < 1200 and r.stdout.startswith("x" * 400)
    assert r.stderr == "err\n"


@every(ISOLATED)
async def test_fd_level_writes_cannot_corrupt_the_protocol(make_env: Factory) -> None:
    env = await make_env("ctx", max_output_chars=1000)
    fake_frame = b"\x00\x00\x00\x00\x00\x00\x00\x0f" + b'{"op": "done"}!'
    code = (
        f"import os, subprocess\nos.write(1, {fake_frame!r})\nos.write(2, b'[fd2]')\n"
        "subprocess.run(['echo', 'from a child'])\n"
        "os.write(1, b'y' * 200_000)"
    )
    r = await env.execute(code)
    assert r.error is None
    assert '{"op": "done"}!' in r.stdout and "[fd2]" in r.stdout and "from a child" in r.stdout
    assert "bytes of process-level output dropped" in r.stdout
    assert (await env.execute("print(context)")).stdout == "ctx\n"


@every(ISOLATED)
async def test_garbage_on_the_protocol_channel_is_a_crash_not_a_hang(make_env: Factory) -> None:
    env = await make_env("ctx")
    await env.execute("x = 1")
    # Cell code can find the worker's private protocol fd; writing junk there is contained.
    r = await env.execute(
        "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'\\xff' * 16)\n"
        "    except OSError:\n        pass\nimport time\ntime.sleep(30)",
        timeout=10,
    )
    assert r.crashed and "protocol error" in (r.error or "")
    assert (await env.execute("print(context)")).stdout == "ctx\n"


def test_protocol_frames_round_trip_and_reject_garbage() -> None:
    message = {"op": "call", "args": ["ü" * 3, 1, None], "kwargs": {"model": "m"}}
    frame = protocol.encode(message)
    assert protocol.decode_length(frame[:8]) == len(frame) - 8
    assert protocol.read_frame(io.BytesIO(frame)) == message
    assert protocol.read_frame(io.BytesIO(b"")) is None
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_length(b"\xff" * 8)
    with pytest.raises(protocol.ProtocolError):
        protocol.read_frame(io.BytesIO(frame[:-1]))
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_body(b'["no op"]')


def test_bootstrap_compiles_the_sources_when_the_bytecode_is_not_for_its_python() -> None:
    body = json.loads(bootstrap.bundle_frame()[protocol.HEADER.size :])
    body["tag"] = "other-interpreter-0.0"
    body["code"] = {name: "not bytecode" for name in body["code"]}  # must not be touched
    data = json.dumps(body).encode()
    proc = subprocess.Popen(
        bootstrap.worker_command(sys.executable),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(protocol.HEADER.pack(len(data)) + data)
        proc.stdin.flush()
        hello = protocol.read_frame(proc.stdout)  # type: ignore[arg-type]
    finally:
        proc.stdin.close()  # the worker exits at the end of its channel
        proc.wait(30)
    assert hello is not None and hello["op"] == "hello"


@every(ISOLATED)
async def test_stdin_is_not_the_protocol_channel(make_env: Factory) -> None:
    env = await make_env("ctx")
    r = await env.execute("input()")
    assert "EOFError" in (r.error or "")
    assert (await env.execute("print(context)")).stdout == "ctx\n"


# -- timeouts and crashes --------------------------------------------------------------------


# A generous grace period: the interrupt normally lands in milliseconds, but a loaded CI
# machine must not turn "interrupted" into "killed".
PATIENT = {"kill_grace": 15}


async def _timeout_keeps_state(env: Environment, busy: str) -> None:
    r = await env.execute(f"before = 'kept'\n{busy}", timeout=1)
    assert r.timed_out and not r.crashed
    assert "exceeded 1 s and was interrupted" in (r.error or "")
    assert (await env.execute("print(before, context)")).stdout == "kept ctx\n"


@every(ALL)
async def test_timeout_interrupts_a_busy_loop_and_state_survives(make_env: Factory) -> None:
    await _timeout_keeps_state(await make_env("ctx", **PATIENT), "while True:\n    pass")


@every(ISOLATED)
async def test_timeout_interrupts_a_blocking_call_and_state_survives(make_env: Factory) -> None:
    # `local` cannot do this: an exception raised into a thread waits for time.sleep to return.
    await _timeout_keeps_state(await make_env("ctx", **PATIENT), "import time\ntime.sleep(600)")


IGNORES_INTERRUPT = """\
lost = 1
while True:
    try:
        while True:
            pass
    except BaseException:
        pass
"""


@every(ISOLATED)
async def test_cell_ignoring_interrupt_is_killed_and_repl_restarts(make_env: Factory) -> None:
    env = await make_env("ctx", kill_grace=1)
    r = await env.execute(IGNORES_INTERRUPT, timeout=1)
    assert r.crashed and r.timed_out and "did not stop when interrupted" in (r.error or "")
    assert "every other variable from earlier cells is lost" in (r.error or "")
    assert (await env.execute("print(context)")).stdout == "ctx\n"
    assert "NameError" in ((await env.execute("lost")).error or "")


@every(ISOLATED)
async def test_worker_crash_is_reported_and_repl_restarts(make_env: Factory) -> None:
    env = await make_env("ctx")
    await env.execute("x = 1")
    r = await env.execute("import os\nos._exit(7)")
    assert r.crashed and "exited with status 7" in (r.error or "")
    assert "`context` (and the setup) is loaded again" in (r.error or "")
    assert (await env.execute("print(context)")).stdout == "ctx\n"
    assert isinstance(env, WorkerEnvironment) and env.restarts == 1


@every(ISOLATED)
async def test_close_is_idempotent_and_leaves_nothing(make_env: Factory) -> None:
    env = await make_env("ctx")
    assert isinstance(env, WorkerEnvironment) and env.area is not None
    await env.execute(
        "import subprocess\np = subprocess.Popen(['sleep', '600'], start_new_session=True)"
    )
    root = env.area.root
    await env.close()
    await env.close()
    assert not root.exists()
    if env.uid is not None and env.kind != "docker":
        assert processes_of_uid(env.uid) == []


@every(ISOLATED)
async def test_cancelled_cell_leaves_nothing_running(make_env: Factory) -> None:
    env = await make_env("ctx")
    assert isinstance(env, WorkerEnvironment)
    task = asyncio.ensure_future(env.execute("import time\ntime.sleep(600)"))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    if env.kind == "docker":
        assert docker_present(getattr(env, "container_ids", [])) == []
    elif env.uid is not None:
        assert processes_of_uid(env.uid) == []
    # The next cell gets a fresh worker.
    assert (await env.execute("print(context)")).stdout == "ctx\n"


def docker_present(container_ids: list[str]) -> list[str]:
    import docker

    client = docker.from_env()
    try:
        present = {c.id for c in client.containers.list(all=True)}
    finally:
        client.close()
    return [c for c in container_ids if c in present]


# -- through the engine ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_rlm_completion_in_each_environment(
    name: str, scripted_model: Any, openai_kwargs: dict
) -> None:
    require(name)
    scripted_model.add_rule(
        lambda r: r.is_rlm_root,
        [
            "```repl\nparts = llm_query_batched(['Say A', 'Say B'])\nn = len(context)\n```",
            "FINAL_VAR(n)",
        ],
    )
    rlm = RLM(
        backend="openai",
        backend_kwargs=openai_kwargs,
        environment=name,
        environment_kwargs={**env_kwargs(name), "timeout": 30},
    )
    res = rlm.completion("x" * 1234, query="How long is the context?")
    assert res.status == "final" and res.response == "1234"
    assert len(res.iterations[0].code_blocks[0].subcalls) == 2


@pytest.mark.parametrize("name", ALL)
def test_child_rlms_get_their_own_environment(
    name: str, scripted_model: Any, openai_kwargs: dict
) -> None:
    require(name)
    scripted_model.add_rule(
        lambda r: r.is_rlm_root and "Query: go" in r.first_user,
        [
            "```repl\nout = rlm_query_batched(['size?', 'size?'], contexts=['aaa', 'bbbb'])\n```",
            "FINAL_VAR(out)",
        ],
    )
    scripted_model.add_rule(lambda r: r.is_rlm_root, "```repl\nFINAL(str(len(context)))\n```")
    rlm = RLM(
        backend="openai",
        backend_kwargs=openai_kwargs,
        environment=name,
        environment_kwargs=env_kwargs(name),
        max_depth=2,
    )
    res = rlm.completion("root context", query="go")
    assert res.status == "final" and res.response == "['3', '4']"


SETUP = "def helper(n):\n    return n * 2\n\nclass Box:\n    pass\n\nlimit = len(context)\n"


@every(ALL)
async def test_setup_cell_defines_hidden_helpers_and_visible_data(make_env: Factory) -> None:
    env = await make_env("abc", setup=SETUP)
    shown = (await env.execute("SHOW_VARS()")).stdout
    assert "limit: int" in shown
    assert "helper" not in shown and "Box" not in shown
    assert (await env.execute("print(helper(limit))")).stdout == "6\n"
    assert await env.list_variables() == {"limit": "int"}


@every(ISOLATED)
async def test_setup_cell_runs_again_after_a_worker_restart(make_env: Factory) -> None:
    env = await make_env("abcd", setup=SETUP)
    await env.execute("extra = 1")
    crashed = await env.execute("import os\nos._exit(3)")
    assert crashed.crashed
    after = await env.execute("print(helper(limit), 'extra' in globals())")
    assert after.error is None and after.stdout == "8 False\n"


@every(ALL)
async def test_failing_setup_cell_fails_start(make_env: Factory) -> None:
    with pytest.raises(Exception, match="ZeroDivisionError"):
        await make_env("x", setup="y = 1 / 0")


# -- disk: the work dir's total size is bounded (disk_mb) ----------------------------------

FILL = "for i in range(64):\n    open(f'f{i}', 'wb').write(b'x' * 2**20)"  # 64 MB in 1 MB files
WORK_DIR_BYTES = "import os\nprint(sum(os.path.getsize(f) for f in os.listdir('.')))"


@every(ISOLATED)
async def test_disk_limit_stops_filling_the_work_dir_and_says_so(make_env: Factory) -> None:
    env = await make_env("ctx", disk_mb=8, **PATIENT)
    await env.execute("kept = 'yes'")
    r = await env.execute(FILL, timeout=60)
    assert "disk_mb=8" in (r.error or "") and not r.crashed and not r.timed_out
    after = await env.execute(WORK_DIR_BYTES)
    assert int(after.stdout) <= 8 * 2**20  # never more than the limit stays behind
    assert (await env.execute("print(kept, context)")).stdout == "yes ctx\n"


@every(ISOLATED)
async def test_one_file_cannot_outgrow_the_disk_limit(make_env: Factory) -> None:
    env = await make_env("ctx", disk_mb=8)
    r = await env.execute("open('big', 'wb').write(b'x' * 20 * 2**20)")
    assert "[Errno 27] File too large" in (r.error or "")
    assert "no file may exceed 8 MB here" in (r.error or "")


@every(["subprocess"])
async def test_host_measured_disk_limit_stops_an_endless_writer(make_env: Factory) -> None:
    # No mount namespace here: the host measures the work dir while the cell runs and
    # stops it long before the cell's own timeout, even if the cell ignores the interrupt.
    env = await make_env("ctx", disk_mb=8, kill_grace=1)
    writer = (
        "import os, time\ni = 0\nwhile True:\n    try:\n"
        "        open(f'g{i}', 'wb').write(b'z' * 2**18); i += 1; time.sleep(0.001)\n"
        "    except BaseException:\n        pass\n"
    )
    r = await env.execute(writer, timeout=120)
    assert (r.error or "").startswith(
        "Disk limit: the subprocess work dir grew past its limit of disk_mb=8 MB."
    )
    assert r.crashed and not r.timed_out  # killed after ignoring the interrupt, restarted
    assert (await env.execute(WORK_DIR_BYTES)).stdout == "0\n"
    assert (await env.execute("print(context)")).stdout == "ctx\n"


@every(["sandbox"])
async def test_sandbox_scratch_space_is_bounded_too(make_env: Factory) -> None:
    env = await make_env("ctx", landlock=False)  # without Landlock, /tmp and /dev are mounts
    code = (
        "import os\nfor path in ('/tmp/x', '/dev/shm/x', '/dev/x'):\n    try:\n"
        "        with open(path, 'wb') as f:\n"
        "            for _ in range(128):\n                f.write(b'x' * 2**20)\n"
        "        print(path, 'wrote 128 MB')\n"
        "    except OSError as e:\n        print(path, e.errno)"
    )
    r = await env.execute(code)
    # ENOSPC for the 64 MB tmpfs mounts, EROFS for /dev itself.
    assert r.stdout.splitlines() == ["/tmp/x 28", "/dev/shm/x 28", "/dev/x 30"]


# -- warm start: workers started ahead of time -----------------------------------------------


async def _start_until_warm(make_env: Factory, tries: int = 6, **kw: Any) -> WorkerEnvironment:
    """Start environments until one lands on a worker started ahead of time."""
    from rlm_engine.environments.warm import warm_pool

    for _ in range(tries):
        env = await make_env("the context", setup="helper = 41", **kw)
        assert isinstance(env, WorkerEnvironment)
        if env.warm_start:
            return env
        await env.close()
        for _ in range(200):  # the pool fills in the background
            if warm_pool.idle(env):  # type: ignore[arg-type]
                break
            await asyncio.sleep(0.05)
    pytest.fail("no environment started on a warm worker")


@every(["subprocess", "sandbox"])
async def test_a_warm_worker_serves_one_completion_like_a_cold_one(make_env: Factory) -> None:
    warm = await _start_until_warm(make_env, memory_mb=256)
    cold = make_environment(warm.kind, {"memory_mb": 256})
    assert isinstance(cold, ProcessWorkerEnvironment)
    cold.use_warm_pool = False
    try:
        await cold.start("the context", {}, setup="helper = 41")
        assert not cold.warm_start and cold.uid != warm.uid
        assert warm.area is not None and cold.area is not None
        assert warm.area.root != cold.area.root
        r = await warm.execute("print(context, helper + 1)")
        assert r.stdout == "the context 42\n"
        # Limits and Landlock come with init, exactly as for the cold worker.
        assert warm.confinement == cold.confinement
        r = await warm.execute("x = bytearray(512 * 2**20)")
        assert "MemoryError" in (r.error or "")
        assert (await warm.execute("print(context)")).stdout == "the context\n"
    finally:
        await cold.close()
    root = warm.area.root
    await warm.close()
    assert not root.exists()
    if warm.uid is not None:
        assert processes_of_uid(warm.uid) == []


@every(["subprocess"])
async def test_warm_start_can_be_turned_off(
    make_env: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RLM_WARM_WORKERS", "0")
    for _ in range(4):
        env = await make_env("ctx")
        assert isinstance(env, WorkerEnvironment) and not env.warm_start
        await env.close()
