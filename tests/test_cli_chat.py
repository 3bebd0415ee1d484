"""``rlm chat`` as a user runs it: a real ``rlm`` subprocess reading questions from stdin,
against the scripted model behind a real HTTP server on 127.0.0.1 (which counts every
call), asserting on stdout, stderr, exit codes and the calls the server saw."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rlm_engine.cli import build_parser
from rlm_engine.scripted import ScriptedModel, ScriptedServer
from rlm_engine.scripted.faults import Fault
from rlm_engine.scripted.policy import query_text

DOC = "\n".join(f"record {i}: value={i * 7}" for i in range(40)) + "\n"
CHUNKS = -(-len(DOC) // 300)  # the sub-calls turn 1 makes

TURN_1 = (
    "```repl\nchunks = [context[i:i + 300] for i in range(0, len(context), 300)]\n"
    "notes = llm_query_batched([f'Summarize: {c}' for c in chunks])\n"
    "count_text = str(len(notes))\n```"
)
TURN_2 = "```repl\nfirst = notes[0][:20]\nprint(first)\n```"


def script(model: ScriptedModel) -> None:
    """Turn 1 makes `notes` with sub-calls; turn 2 reads it; "Thanks!" is answered at once."""

    def when(text: str):
        return lambda r: r.is_rlm_root and text in query_text(r.first_user)  # not the digest

    model.add_rule(when("How many notes"), [TURN_1, "FINAL_VAR(count_text)"])
    model.add_rule(when("first note"), [TURN_2, "FINAL_VAR(first)"])
    model.add_rule(when("Thanks!"), ["FINAL(You're welcome!)"])


def calls(server: ScriptedServer, model: str) -> int:
    return len(server.stats.completions(model))


def env() -> dict[str, str]:
    drop = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "RLM_API_URL", "OPENAI_BASE_URL")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "RLM_TEST_KEY": "sk-test"}


def server_flags(server: ScriptedServer) -> list[str]:
    return ["--backend", "openai", "--base-url", server.base_url, "--model", "scripted-root",
            "--sub-model", "scripted-sub", "--api-key-env", "RLM_TEST_KEY"]  # fmt: skip


def chat(*args: str, input: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rlm_engine.cli", "chat", *args],
        input=input,
        capture_output=True,
        text=True,
        env=env(),
        timeout=180,
    )


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    p = tmp_path / "records.txt"
    p.write_text(DOC)
    return p


def turn_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("rlm: turn ")]


def test_three_turns_share_one_repl_and_each_shows_its_usage(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer, doc: Path
) -> None:
    script(scripted_model)
    questions = "How many notes are there?\nWhat does the first note start with?\nThanks!\n"
    r = chat("-c", str(doc), *server_flags(scripted_server), input=questions)
    assert r.returncode == 0, r.stderr  # EOF ends the chat
    assert r.stdout.splitlines() == [str(CHUNKS), "Scripted answer: Sum", "You're welcome!"]
    # Turn 2 read `notes` from turn 1's REPL: the sub-calls were made once, by turn 1.
    assert calls(scripted_server, "scripted-sub") == CHUNKS
    assert calls(scripted_server, "scripted-root") == 2 + 2 + 1
    one, two, three = turn_lines(r.stderr)
    assert one.startswith(f"rlm: turn 1: final · 2 iterations · {CHUNKS + 2} LM calls (2 root,")
    assert two.startswith("rlm: turn 2: final · 2 iterations · 2 LM calls (2 root, 0 sub)")
    assert three.startswith("rlm: turn 3: final · 1 iterations · 1 LM calls (1 root, 0 sub)")
    # Each line ends with the running conversation total, cached tokens included.
    assert f"| conversation: 3 turns · {CHUNKS + 5} LM calls · " in three
    assert "cached)" in three.split("| conversation:")[1]
    assert "backend: openai (--backend)" in r.stderr
    assert "rlm: iteration 1:" in r.stderr  # progress, as rlm run shows it


def test_save_and_resume_continue_without_paying_again(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer, doc: Path, tmp_path: Path
) -> None:
    script(scripted_model)
    saved = tmp_path / "conversation.json"
    first = chat(
        "-c", str(doc), *server_flags(scripted_server),
        input=f"How many notes are there?\n/save {saved}\n",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == str(CHUNKS)
    assert f"saved 1 turn(s) to {saved}" in first.stderr
    data = json.loads(saved.read_text())
    assert [t["query"] for t in data["turns"]] == ["How many notes are there?"]
    subs, roots = calls(scripted_server, "scripted-sub"), calls(scripted_server, "scripted-root")
    assert subs == CHUNKS

    second = chat(
        "-c", str(doc), "--resume", str(saved), *server_flags(scripted_server),
        input="What does the first note start with?\n",
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "Scripted answer: Sum"  # `notes` was rebuilt by replay
    assert "resumed 1 turn(s)" in second.stderr
    # Replay served the recorded sub-call answers: only turn 2's two root calls were paid.
    assert calls(scripted_server, "scripted-sub") == subs
    assert calls(scripted_server, "scripted-root") == roots + 2
    (line,) = turn_lines(second.stderr)
    assert line.startswith("rlm: turn 2: ") and "| conversation: 2 turns" in line


def test_resume_refuses_other_material_before_any_call(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer, doc: Path, tmp_path: Path
) -> None:
    script(scripted_model)
    saved = tmp_path / "conversation.json"
    r = chat("-c", str(doc), *server_flags(scripted_server),
             input=f"How many notes are there?\n/save {saved}\n")  # fmt: skip
    assert r.returncode == 0, r.stderr
    sent = len(scripted_server.stats.log)
    other = tmp_path / "other.txt"
    other.write_text(DOC.replace("value=7", "value=8"))  # same size, other text
    r = chat("-c", str(other), "--resume", str(saved), *server_flags(scripted_server),
             input="What does the first note start with?\n")  # fmt: skip
    assert r.returncode == 64, r.stderr
    assert f"rlm: error: --context {other} is not the material of the saved conversation" in (
        r.stderr
    )
    not_saved = tmp_path / "not-a-conversation.json"
    not_saved.write_text('{"hello": 1}')
    r = chat("-c", str(doc), "--resume", str(not_saved), *server_flags(scripted_server))
    assert r.returncode == 1 and "not a saved conversation" in r.stderr
    assert len(scripted_server.stats.log) == sent


def test_eof_and_quit_end_the_chat_with_exit_0(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer, doc: Path
) -> None:
    script(scripted_model)
    r = chat("-c", str(doc), *server_flags(scripted_server), input="")
    assert (r.returncode, r.stdout) == (0, "")
    r = chat("-c", str(doc), *server_flags(scripted_server), input="/quit\nHow many notes?\n")
    assert (r.returncode, r.stdout) == (0, "")
    assert scripted_server.stats.log == []  # nothing after /quit was asked
    r = chat("-c", str(doc), *server_flags(scripted_server), input="/frobnicate\n/save\n")
    assert r.returncode == 0
    assert "rlm: unknown command /frobnicate" in r.stderr and "rlm: usage: /save FILE" in r.stderr


def test_stdin_cannot_be_the_context() -> None:
    r = chat("-c", "-", input="question\n")
    assert r.returncode == 64
    assert "rlm chat reads its questions from stdin" in r.stderr


def test_ctrl_c_during_a_turn_exits_130_and_save_kept_the_finished_turns(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer, doc: Path, tmp_path: Path
) -> None:
    script(scripted_model)
    scripted_model.add_rule(
        lambda r: r.is_rlm_root and "Ask again" in r.first_user,
        ["```repl\nagain = llm_query('one more question')\n```", "FINAL_VAR(again)"],
    )
    asked = threading.Event()

    def hang_turn_two(req) -> bool:
        if "one more question" in req.last_user:
            asked.set()
            return True
        return False

    scripted_server.inject(Fault(hang=True, times=None, match=hang_turn_two))
    saved, logs = tmp_path / "autosave.json", tmp_path / "logs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlm_engine.cli", "chat", "-c", str(doc),
         *server_flags(scripted_server), "--save", str(saved), "--log-dir", str(logs)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env(),
    )  # fmt: skip
    try:
        assert proc.stdin is not None
        proc.stdin.write("How many notes are there?\nAsk again, please.\n")
        proc.stdin.flush()
        assert asked.wait(60), "turn 2 never reached its sub-call"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert out.strip() == str(CHUNKS)  # turn 1's answer; turn 2 never finished
    assert "rlm: interrupted (Ctrl-C); 1 turn(s) were not saved" not in err
    assert "rlm: interrupted (Ctrl-C)" in err
    # --save wrote the conversation after turn 1, so it can be resumed.
    assert [t["query"] for t in json.loads(saved.read_text())["turns"]] == [
        "How many notes are there?"
    ]
    # The interrupted turn's trace ends with an interrupted result line.
    traces = sorted(logs.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    last = [json.loads(line) for line in traces[-1].read_text().splitlines()][-1]
    assert last["type"] == "result" and last["status"] == "interrupted"
    assert f"the trace is {traces[-1]}" in err


def test_ctrl_c_at_the_prompt_exits_130(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer, doc: Path
) -> None:
    script(scripted_model)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlm_engine.cli", "chat", "-c", str(doc),
         *server_flags(scripted_server)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env(),
    )  # fmt: skip
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("How many notes are there?\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == str(CHUNKS)  # now it waits for a question
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "rlm: interrupted (Ctrl-C); 1 turn(s) were not saved" in err


def test_cached_input_tokens_and_cost_are_shown_per_turn_and_in_total(
    scripted_model: ScriptedModel, scripted_server: ScriptedServer, doc: Path
) -> None:
    steps = [f"```repl\nprint('step {i}', 'y' * 3000)\n```" for i in range(4)]
    scripted_model.add_rule(lambda r: r.is_rlm_root and "Go step" in r.first_user,
                            [*steps, "FINAL(done)"])  # fmt: skip
    scripted_model.add_rule(lambda r: r.is_rlm_root and "Thanks" in r.first_user, ["FINAL(ok)"])
    r = chat(
        "-c", str(doc), "--backend", "anthropic", "--base-url", scripted_server.url,
        "--model", "claude-haiku-4-5", "--api-key-env", "RLM_TEST_KEY",
        input="Go step by step.\nThanks\n",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    served = scripted_server.stats.completions()
    cached = sum(rec.cached_tokens for rec in served)
    assert cached > 0  # the server read the root's growing prefix from its cache
    one, two = turn_lines(r.stderr)
    turn_part, total_part = two.split(" | ")
    assert "$" in one.split(" | ")[0] and "$" in total_part  # a known price: costs shown
    from rlm_engine.progress import fmt_tokens

    assert f"({fmt_tokens(cached)} cached)" in total_part


def _flags(parser: argparse.ArgumentParser, command: str) -> dict[str, tuple]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    group = next(
        g for g in sub.choices[command]._action_groups if g.title.startswith("RLM options")
    )
    return {
        a.dest: (tuple(a.option_strings), a.type is None, a.default, a.metavar, a.help)
        for a in group._group_actions
    }


def test_every_engine_option_is_a_chat_flag_from_the_same_generator() -> None:
    parser = build_parser()
    run, chat_flags = _flags(parser, "run"), _flags(parser, "chat")
    assert chat_flags == run and len(run) > 30
    args = parser.parse_args(["chat", "-c", "doc.txt", "--max-iterations", "7",
                              "--no-prompt-caching", "--root-context-window", "9000"])  # fmt: skip
    from rlm_engine.cli import run_config
    from rlm_engine.cli_options import options_from_args

    args.options = options_from_args(args)
    config = run_config(args, "openai")
    assert config.run.max_iterations == 7
    assert config.history.prompt_caching is False
    assert config.history.root_context_window == 9000


def test_a_turn_that_raises_is_dropped_and_the_chat_goes_on(
    scripted_model: ScriptedModel,
    scripted_server: ScriptedServer,
    doc: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Not a failed turn (that is a result with status error) but an exception out of the
    loop: the turn is abandoned, said on one line, and the next question still works."""
    import io

    from rlm_engine import session
    from rlm_engine.cli import main

    script(scripted_model)
    real_run, failures = session.run, [RuntimeError("the REPL went away")]

    async def run_once_broken(s):
        if failures:
            raise failures.pop()
        return await real_run(s)

    monkeypatch.setattr(session, "run", run_once_broken)
    monkeypatch.setenv("RLM_TEST_KEY", "sk-test")
    questions = "How many notes are there?\n" * 2 + "What does the first note start with?\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(questions))
    code = main(["chat", "-c", str(doc), *server_flags(scripted_server), "-e", "local"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert (
        "rlm: error: RuntimeError: the REPL went away (the turn was dropped; the REPL and "
        "earlier turns are kept)"
    ) in err
    assert out.splitlines() == [str(CHUNKS), "Scripted answer: Sum"]
    assert [line.split(": final")[0] for line in turn_lines(err)] == ["rlm: turn 1", "rlm: turn 2"]
