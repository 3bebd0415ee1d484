"""Remote sandboxes (``modal``, ``prime``, ``e2b``): the one stdio worker over each SDK's
exec streams.

ONLY the cloud service is mocked (no cloud is reachable from CI): ``remote_sandbox_fakes``
stands in for each SDK's sandbox and process handles and runs the command it is given in a
local subprocess, so the worker, its protocol, ``llm_query`` answered by the host over the
same channel, timeouts (interrupt, then kill), crash restarts and the termination of every
sandbox are exercised for real. The last tests check the calls the adapters (and fakes)
make against the installed SDKs' real signatures, since a fake can drift from its SDK.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from remote_sandbox_fakes import INSTALL, CloudLedger, remove_remote_dirs

from rlm_engine import RLM, RLMConfig
from rlm_engine.environments import HostFunction, make_environment
from rlm_engine.environments.isolation import WorkArea
from rlm_engine.environments.remote import (
    E2BEnvironment,
    MissingCredentialsError,
    ModalEnvironment,
    PrimeEnvironment,
    RemoteEnvironment,
)
from rlm_engine.environments.remote.transport import ARMOR_RELAY, ArmoredSink, live_sandboxes

PROVIDERS = ["modal", "prime", "e2b"]
#: The fake clouds run the worker on this machine's python3 (a real sandbox: the image's).
KW = {"python": "/usr/bin/python3"} if os.path.exists("/usr/bin/python3") else {}


@pytest.fixture(params=PROVIDERS)
def cloud(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """(provider name, ledger of what the fake cloud saw), with that cloud faked."""
    ledger = CloudLedger()
    INSTALL[request.param](monkeypatch, ledger)
    before = set(os.listdir("/tmp"))
    try:
        yield request.param, ledger
    finally:
        ledger.kill_all()
        remove_remote_dirs(before)


async def _started(name: str, context: Any = "ctx", **kw: Any) -> RemoteEnvironment:
    env = make_environment(name, {**KW, "timeout": 30, **kw})
    assert isinstance(env, RemoteEnvironment)
    await env.start(context, {})
    return env


def test_a_completion_runs_in_each_remote_sandbox_with_sub_calls_served_by_the_host(
    cloud: Any, scripted_model: Any, openai_kwargs: dict
) -> None:
    name, ledger = cloud
    scripted_model.add_rule(
        lambda r: r.is_rlm_root,
        [
            "```repl\nparts = llm_query_batched(['Say A', 'Say B'])\n"
            "n = f'{len(context)} {len(parts)}'\n```",
            "FINAL_VAR(n)",
        ],
    )
    rlm = RLM(
        backend="openai",
        backend_kwargs=openai_kwargs,
        environment=name,
        environment_kwargs={**KW, "timeout": 30},
    )
    res = rlm.completion("é" * 5000 + "x" * 1234, query="How long is the context?")
    assert res.status == "final" and res.response == "6234 2", res.error
    assert res.environment == name
    assert len(res.iterations[0].code_blocks[0].subcalls) == 2
    # One sandbox, the context uploaded once as a file, terminated when the run ended.
    assert len(ledger.created) == 1 and ledger.live() == []
    assert len(ledger.uploads) == 1 and ledger.uploads[0][1].endswith(".context")
    # The worker saw the minimal environment, none of the host's (API keys included).
    assert set(ledger.envs[0]) >= {"PATH", "HOME", "TMPDIR"}
    assert not any("KEY" in k or "TOKEN" in k for k in ledger.envs[0])
    assert live_sandboxes() == []


async def test_state_output_and_host_calls_cross_the_remote_channel(cloud: Any) -> None:
    name, ledger = cloud

    async def echo(x: Any) -> Any:
        return {"got": x, "big": "y" * 3_000_000}  # crosses as several stdin writes

    env = make_environment(name, {**KW, "timeout": 30})
    await env.start({"k": [1, 2]}, {"echo": HostFunction("echo", echo)})
    try:
        r = await env.execute("a = echo('ü\\x00')\nprint(a['got'], len(a['big']), context['k'])")
        assert r.error is None and r.stdout == "ü\x00 3000000 [1, 2]\n"
        r = await env.execute("import os, sys\nos.write(1, b'\\x00\\xff raw')\nprint(a['got'])")
        assert r.error is None and "ü" in r.stdout
        assert await env.list_variables() == {"a": "dict"}
    finally:
        await env.close()
    assert ledger.live() == []


IGNORES_INTERRUPT = """\
while True:
    try:
        while True:
            pass
    except BaseException:
        pass
"""


async def test_timeout_interrupts_and_keeps_state_then_a_stuck_cell_ends_its_sandbox(
    cloud: Any,
) -> None:
    name, ledger = cloud
    env = await _started(name, kill_grace=1)
    try:
        r = await env.execute("before = 'kept'\nimport time\ntime.sleep(600)", timeout=1)
        assert r.timed_out and not r.crashed and "was interrupted" in (r.error or "")
        assert (await env.execute("print(before, context)")).stdout == "kept ctx\n"
        assert len(ledger.created) == 1
        r = await env.execute(IGNORES_INTERRUPT, timeout=1)
        assert r.crashed and r.timed_out and "did not stop when interrupted" in (r.error or "")
        # Killing the worker terminated its sandbox; the REPL goes on in a fresh one with
        # the context uploaded again.
        assert ledger.terminated == ledger.created[:1] and len(ledger.created) == 2
        assert len(ledger.uploads) == 2
        assert (await env.execute("print(context)")).stdout == "ctx\n"
        assert env.sandbox_ids == ledger.created
    finally:
        await env.close()
    assert ledger.live() == []


async def test_a_worker_crash_is_reported_with_its_exit_status(cloud: Any) -> None:
    name, ledger = cloud
    env = await _started(name)
    try:
        r = await env.execute("import os\nos._exit(7)")
        assert r.crashed and "exited with status 7" in (r.error or "")
        assert (await env.execute("print(context)")).stdout == "ctx\n"
        assert env.restarts == 1 and len(ledger.created) == 2
    finally:
        await env.close()
    assert ledger.live() == []


async def test_a_cancelled_cell_terminates_the_sandbox(cloud: Any) -> None:
    name, ledger = cloud
    env = await _started(name)
    try:
        task = asyncio.ensure_future(env.execute("import time\ntime.sleep(600)"))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ledger.live() == []
        for proc in ledger.processes:  # killed with its sandbox: reaped at once
            await asyncio.wait_for(proc.wait(), 5)
    finally:
        await env.close()


async def test_a_failed_upload_terminates_the_sandbox_and_says_why(cloud: Any) -> None:
    name, ledger = cloud
    ledger.upload_error = OSError("quota exceeded")
    env = make_environment(name, KW)
    with pytest.raises(OSError, match="quota exceeded"):
        await env.start("ctx", {})
    assert len(ledger.created) == 1 and ledger.live() == []
    assert live_sandboxes() == []


async def test_creation_past_create_timeout_fails_clearly_and_the_late_sandbox_is_ended(
    cloud: Any,
) -> None:
    name, ledger = cloud
    ledger.create_delay = 1.0
    env = make_environment(name, {**KW, "create_timeout": 0.2})
    with pytest.raises(RuntimeError, match=r"not running within create_timeout=0.2 s"):
        await env.start("ctx", {})
    await asyncio.sleep(1.5)  # the sandbox the provider made after we gave up
    assert len(ledger.created) == 1 and ledger.live() == []


async def test_cancelled_while_creating_the_late_sandbox_is_ended(cloud: Any) -> None:
    name, ledger = cloud
    ledger.create_delay = 0.5
    env = make_environment(name, KW)
    task = asyncio.ensure_future(env.start("ctx", {}))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(1.0)
    assert len(ledger.created) == 1 and ledger.live() == []


async def test_the_documented_account_check_starts_a_sandbox_and_runs_a_cell(cloud: Any) -> None:
    from rlm_engine.environments.probe import probe

    name, ledger = cloud
    assert await probe(name, **KW) is None
    assert len(ledger.created) == 1 and ledger.live() == []


def test_remote_names_work_in_every_form_and_options_are_checked() -> None:
    for name in PROVIDERS:
        RLMConfig(environment=name, environment_kwargs={"sandbox_timeout": 600, "cpus": 2})
        with pytest.raises(TypeError, match="option 'sandbox_timeout' must be int"):
            RLMConfig(environment=name, environment_kwargs={"sandbox_timeout": "1h"})
    with pytest.raises(TypeError, match="option 'app_name' must be str"):
        make_environment("modal", {"app_name": 3})
    with pytest.raises(ValueError, match="sandbox_timeout must be at least 60"):
        make_environment("e2b", {"sandbox_timeout": 5})
    from rlm_integrations.langchain import RLMChatModel

    assert RLMChatModel(environment="prime").environment == "prime"


def test_rlm_run_takes_a_remote_environment_and_reports_missing_credentials(
    tmp_path: Any,
) -> None:
    import subprocess

    doc = tmp_path / "doc.txt"
    doc.write_text("a document\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
    done = subprocess.run(
        [sys.executable, "-m", "rlm_engine.cli", "run", "-c", str(doc), "-q", "What is it?"]
        + ["--backend", "scripted", "--environment", "e2b", "--env-opt", "sandbox_timeout=600"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "found no E2B API key: set E2B_API_KEY" in done.stderr


async def test_landlock_true_is_refused_not_silently_dropped(cloud: Any) -> None:
    name, ledger = cloud
    env = make_environment(name, {**KW, "landlock": True})
    with pytest.raises(RuntimeError, match=f"landlock=True is not supported by the {name}"):
        await env.start("ctx", {})
    assert ledger.live() == []


@pytest.mark.parametrize(
    ("name", "module", "extra"),
    [("modal", "modal", "modal"), ("prime", "prime_sandboxes", "prime"), ("e2b", "e2b", "e2b")],
)
async def test_a_missing_sdk_names_the_extra(
    name: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    env = make_environment(name, KW)
    with pytest.raises(RuntimeError, match=rf"pip install 'rlm-integrations\[{extra}\]'"):
        await env.start("ctx", {})


@pytest.mark.parametrize(
    ("name", "variables", "says"),
    [
        ("modal", ["MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"], "modal token new"),
        ("prime", ["PRIME_API_KEY"], "PRIME_API_KEY or run `prime login`"),
        ("e2b", ["E2B_API_KEY"], "set E2B_API_KEY"),
    ],
)
async def test_missing_credentials_say_which_variable_or_login(
    name: str, variables: list[str], says: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for var in variables:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.modal.toml or ~/.prime/config.json
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(tmp_path / "none.toml"))
    if name == "modal":
        import modal

        monkeypatch.setattr(modal.config, "config", modal.config.Config())
    env = make_environment(name, KW)
    with pytest.raises(MissingCredentialsError, match=says):
        await env.start("ctx", {})


def test_armor_decodes_base64_lines_split_anywhere_and_sets_aside_foreign_text() -> None:
    async def run() -> None:
        sink = ArmoredSink()
        seen: list[bytes] = []
        sink.on_stderr = seen.append
        import base64

        payload = bytes(range(256)) * 3
        text = b"motd from a login shell\n" + base64.b64encode(payload) + b"\n"
        for i in range(0, len(text), 7):
            sink.stdout(text[i : i + 7])
        sink.end(0)
        assert await sink.frames.read() == payload
        assert seen and b"motd" in seen[0]

    asyncio.run(run())
    assert "base64" in ARMOR_RELAY and "subprocess" in ARMOR_RELAY


# -- the adapters' (and fakes') calls against the real SDKs ------------------------------
def _accepts(fn: Any, *names: str) -> None:
    params = inspect.signature(fn).parameters
    missing = [n for n in names if n not in params]
    assert not missing, f"{fn.__qualname__} takes no {missing}: {list(params)}"


def _area(context_bytes: int = 0) -> WorkArea:
    from pathlib import Path

    return WorkArea(Path("/nonexistent"), Path("/nonexistent"), None, "none", context_bytes, None)


def test_modal_calls_match_the_installed_sdk() -> None:
    import modal
    from modal.container_process import ContainerProcess
    from modal.io_streams import StreamWriter
    from modal.sandbox.sandbox import SandboxFilesystem

    env = ModalEnvironment(cpus=2.0)
    _accepts(modal.Sandbox.create, "app", "image", *env.create_kwargs(_area(10)))
    _accepts(modal.Sandbox.exec, "env", "text")
    _accepts(modal.Sandbox.terminate, "self")
    _accepts(modal.App.lookup, "name", "create_if_missing")
    _accepts(modal.Image.from_registry, "tag")
    _accepts(SandboxFilesystem.copy_from_local, "local_path", "remote_path")
    _accepts(StreamWriter.write, "data")
    for method in (
        modal.Sandbox.create,
        modal.Sandbox.exec,
        modal.Sandbox.terminate,
        modal.App.lookup,
        SandboxFilesystem.copy_from_local,
        StreamWriter.drain,
        ContainerProcess.wait,
    ):
        assert hasattr(method, "aio"), method
    assert hasattr(modal.Sandbox, "filesystem") and hasattr(ContainerProcess, "stdin")
    assert env.create_kwargs(_area())["block_network"] is True


def test_prime_calls_match_the_installed_sdk() -> None:
    import prime_sandboxes as prime

    env = PrimeEnvironment(cpus=2.0, sandbox_timeout=90, memory_mb=3000)
    request = prime.CreateSandboxRequest(**env.create_request(_area(50 * 1024 * 1024)))
    # A VM where the SDK still distinguishes one (0.2/0.3); 0.4+ run processes in any.
    assert getattr(request, "vm", True) is True and request.network_denylist == ["0.0.0.0/0"]
    assert request.timeout_minutes == 2 and request.memory_gb == 4 and request.cpu_cores == 2
    client = prime.AsyncSandboxClient
    _accepts(client.create, "request")
    _accepts(client.wait_for_creation, "sandbox_id")
    _accepts(client.upload_file, "sandbox_id", "file_path", "local_file_path")
    _accepts(client.open_process, "sandbox_id", "command", "env")
    _accepts(client.delete, "sandbox_id")
    _accepts(prime.AsyncSandboxProcess.write_stdin, "data")
    for name in ("aclose",):
        assert inspect.iscoroutinefunction(getattr(client, name))
    for name in ("wait", "kill", "aclose", "write_stdin"):
        assert inspect.iscoroutinefunction(getattr(prime.AsyncSandboxProcess, name))
    _accepts(prime.SandboxClient.delete, "sandbox_id")


def test_e2b_calls_match_the_installed_sdk() -> None:
    import e2b
    from e2b.sandbox_async.commands.command import Commands
    from e2b.sandbox_async.commands.command_handle import AsyncCommandHandle
    from e2b.sandbox_async.filesystem.filesystem import Filesystem

    env = E2BEnvironment()
    _accepts(e2b.AsyncSandbox.create, *env.create_kwargs(_area()))
    _accepts(
        Commands.run,
        "cmd", "background", "stdin", "envs", "on_stdout", "on_stderr", "timeout",
    )  # fmt: skip
    _accepts(Commands.send_stdin, "pid", "data")
    _accepts(Filesystem.write, "path", "data")
    assert inspect.iscoroutinefunction(AsyncCommandHandle.wait)
    # sandbox.kill() (async, instance) and e2b.Sandbox.kill(sandbox_id) (blocking, at exit)
    assert inspect.iscoroutinefunction(e2b.AsyncSandbox.kill.__wrapped__)
    _accepts(e2b.Sandbox._cls_kill, "sandbox_id")
    assert env.create_kwargs(_area())["allow_internet_access"] is False


def test_the_fakes_take_the_real_sdks_parameter_names() -> None:
    """A fake that grew a parameter the SDK lacks would let a wrong call pass here."""
    import e2b
    import prime_sandboxes as prime
    from e2b.sandbox_async.commands.command import Commands
    from remote_sandbox_fakes import FakeE2BCommands, FakePrimeClient

    for fake, real in [
        (FakePrimeClient.open_process, prime.AsyncSandboxClient.open_process),
        (FakePrimeClient.upload_file, prime.AsyncSandboxClient.upload_file),
        (FakePrimeClient.delete, prime.AsyncSandboxClient.delete),
        (FakeE2BCommands.run, Commands.run),
        (FakeE2BCommands.send_stdin, Commands.send_stdin),
    ]:
        fake_params = set(inspect.signature(fake).parameters)
        real_params = set(inspect.signature(real).parameters)
        assert fake_params <= real_params, (fake.__qualname__, fake_params - real_params)
    _accepts(e2b.AsyncSandbox.create, "template", "timeout", "allow_internet_access", "metadata")
