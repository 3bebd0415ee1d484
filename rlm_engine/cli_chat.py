"""``rlm chat``: an interactive conversation over a file or directory.

``rlm run`` answers one question and drops its REPL. A chat keeps one
:class:`~rlm_engine.conversation.Conversation` open: each line read from stdin is a turn,
variables a turn computed are there for the next, and a follow-up that needs no new look
at the material can be answered by one root call. The context, the backend choice and
every engine option are ``rlm run``'s (the same loader, the same generated flags).

Each turn shows progress on stderr, prints its answer on stdout, then one line with what
the turn used and what the conversation used so far (calls, tokens, cached input tokens,
cost). ``/save FILE`` writes the conversation as JSON (``Conversation.to_dict()`` plus a
fingerprint of the context); ``--resume FILE`` rebuilds it in a new process by replaying
the recorded cells with their recorded sub-call answers, so nothing is paid twice.

The conversation runs on an event loop in a helper thread, so the main thread stays free
to read input and to take Ctrl-C: a Ctrl-C cancels the running turn (its trace ends with
an ``interrupted`` line), closes the REPL and exits 130. EOF or ``/quit`` exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rlm_engine.cli import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    _say,
    _say_estimate,
    choose_backend,
    load_context,
    run_config,
)
from rlm_engine.cli_options import add_option_flags
from rlm_engine.clients import BACKENDS
from rlm_engine.config import RLMConfig
from rlm_engine.usage import UsageTotals

if TYPE_CHECKING:
    from rlm_engine.conversation import Conversation
    from rlm_engine.state import RLMResult

T = TypeVar("T")

#: Key of the chat's own metadata in a saved conversation (restore ignores it).
SAVED_KEY = "rlm_chat"
#: Seconds a cancelled turn and the REPL's shutdown may take before the chat exits anyway.
_STOP_WAIT = 30.0
COMMANDS = {
    "/save FILE": "write the conversation to FILE (continue it later with --resume FILE)",
    "/quit": "end the chat (also /exit, or EOF: Ctrl-D)",
    "/help": "this list",
}


# ----------------------------------------------------------------------------- the loop


class _Loop:
    """An event loop on a helper thread that runs one coroutine at a time for the main
    thread. A Ctrl-C while the main thread waits cancels the coroutine and waits (bounded)
    for it to unwind, so a cancelled turn can still end its trace and free its REPL."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rlm-chat", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], *, wait: float | None = None) -> T:
        unwound = threading.Event()

        async def body() -> T:
            try:
                return await coro
            finally:
                unwound.set()

        future = asyncio.run_coroutine_threadsafe(body(), self._loop)
        try:
            return future.result(timeout=wait)
        except KeyboardInterrupt:
            future.cancel()  # cancels the task on the loop
            unwound.wait(_STOP_WAIT)
            raise

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=_STOP_WAIT)
        if not self._thread.is_alive():
            self._loop.close()


# ----------------------------------------------------------------------------- saved files


def context_digest(context: str | list[str]) -> str:
    """SHA-256 of the material, to tell on ``--resume`` that ``--context`` is the same."""
    h = hashlib.sha256()
    for piece in [context] if isinstance(context, str) else context:
        h.update(piece.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def write_saved(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a crash while saving leaves the previous file whole."""
    path = path.expanduser()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise CLIError(f"cannot write {path}: {e.strerror or e}") from e


def read_saved(spec: str) -> dict[str, Any]:
    path = Path(spec).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CLIError(f"--resume {spec}: cannot read it: {e.strerror or e}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CLIError(f"--resume {spec}: not a saved conversation (invalid JSON: {e})") from e
    if not (
        isinstance(data, dict)
        and isinstance(data.get("turns"), list)
        and isinstance(data.get("contexts"), list)
    ):
        raise CLIError(
            f"--resume {spec}: not a saved conversation (write one with /save FILE or "
            "Conversation.to_dict())"
        )
    return data


def check_resume_context(data: dict[str, Any], context: str | list[str], args: Any) -> None:
    """A conversation replays its cells against the material it was made with: resuming
    over other material would replay quietly into wrong variables, so it is refused."""
    from rlm_engine import prompts
    from rlm_engine.inputs import prepare_input

    names = [c.get("name") for c in data["contexts"]]
    others = [n for n in names if n != "context"]
    if others:
        raise CLIError(
            f"--resume {args.resume}: the conversation also holds {', '.join(map(str, others))}, "
            "which rlm chat cannot supply (restore it with Conversation.restore in Python)",
            EXIT_USAGE,
        )
    saved = data.get(SAVED_KEY) or {}
    if saved.get("context_sha256"):
        same = saved["context_sha256"] == context_digest(context)
    elif "context" in names:  # a plain Conversation.to_dict(): compare the descriptions
        value, _ = prepare_input(context, None, require_material=False)
        want = next(c["info"] for c in data["contexts"] if c.get("name") == "context")
        same = json.loads(json.dumps(prompts.describe_context(value))) == want
    else:
        same = False
    if not same:
        was = f" (it was made over {saved['context']})" if saved.get("context") else ""
        raise CLIError(
            f"--context {args.context} is not the material of the saved conversation{was}: "
            "its recorded steps would replay against different text; pass the same file or "
            "directory",
            EXIT_USAGE,
        )


# ----------------------------------------------------------------------------- summaries


def _totals(usage: dict[str, Any]) -> UsageTotals:
    t = usage.get("total") or {}
    return UsageTotals(
        calls=int(t.get("calls") or 0),
        input_tokens=int(t.get("input_tokens") or 0),
        output_tokens=int(t.get("output_tokens") or 0),
        cost=t.get("cost"),
        cached_input_tokens=int(t.get("cached_input_tokens") or 0),
        cache_write_tokens=int(t.get("cache_write_tokens") or 0),
    )


def _used(u: UsageTotals, split: str = "") -> str:
    from rlm_engine.progress import fmt_cost, fmt_tokens

    cost = "cost n/a" if u.cost is None else fmt_cost(u.cost)
    return (
        f"{u.calls:,} LM calls{split} · {fmt_tokens(u.total_tokens)} tokens "
        f"({fmt_tokens(u.cached_input_tokens)} cached) · {cost}"
    )


def turn_line(number: int, res: RLMResult, conversation: UsageTotals, turns: int) -> str:
    """What one turn used, and the conversation so far (restored turns included)."""
    from rlm_engine.progress import fmt_seconds

    u = res.usage
    split = f" ({u.root.calls} root, {u.sub.calls} sub)"
    turn = (
        f"{res.status} · {len(res.iterations)} iterations · {_used(u.total, split)} · "
        f"{fmt_seconds(res.duration)}"
    )
    plural = "s" if turns != 1 else ""
    return f"turn {number}: {turn} | conversation: {turns} turn{plural} · {_used(conversation)}"


# ----------------------------------------------------------------------------- the chat


class Chat:
    """One ``rlm chat`` session: the conversation, its loop and what the user typed."""

    def __init__(self, args: argparse.Namespace, config: RLMConfig, context: str | list[str]):
        self.args = args
        self.config = config
        self.context = context
        self.loop = _Loop()
        self.conv: Conversation | None = None
        self.saved_turns = 0  # turns in the last file written
        self.tty = sys.stdin is not None and sys.stdin.isatty()
        self.in_turn = False  # a Ctrl-C now interrupts a turn, whose trace it ends

    # -- life cycle ---------------------------------------------------------------------
    def run(self, saved: dict[str, Any] | None) -> int:
        try:
            self._open(saved)
            if self.tty and not self.args.quiet:
                _say("type a question; /help lists the commands, /quit or Ctrl-D ends the chat")
            while True:
                try:
                    line = input("> " if self.tty else "")
                except EOFError:
                    if self.tty:
                        print()  # end the prompt's line
                    self._goodbye()
                    return EXIT_OK
                line = line.strip()
                if not line:
                    continue
                if line.startswith("/"):
                    if self._command(line):
                        self._goodbye()
                        return EXIT_OK
                    continue
                self._turn(line)
        except KeyboardInterrupt:
            unsaved = self._unsaved()
            _say(
                "interrupted (Ctrl-C)"
                + (f"; {unsaved} turn(s) were not saved" if unsaved else "")
                + self._trace_note()
            )
            return EXIT_INTERRUPTED
        finally:
            self._close()

    def _open(self, saved: dict[str, Any] | None) -> None:
        from rlm_engine.conversation import Conversation

        if saved is None:
            conv = Conversation(self.config, self.context)
            self.loop.run(conv.astart())
            self.conv = conv
            return
        started = time.monotonic()
        self.conv = self.loop.run(
            Conversation.arestore(self.config, saved, {"context": self.context})
        )
        self.saved_turns = len(self.conv.turns)
        if not self.args.quiet:
            _say(
                f"resumed {len(self.conv.turns)} turn(s) from {self.args.resume}: their cells "
                f"replayed with the recorded sub-call answers, no LM calls "
                f"({time.monotonic() - started:.1f}s)"
            )

    def _close(self) -> None:
        try:
            if self.conv is not None:
                with contextlib.suppress(Exception, KeyboardInterrupt):
                    self.loop.run(self.conv.aclose(), wait=_STOP_WAIT)
        finally:
            self.loop.close()

    def _unsaved(self) -> int:
        return len(self.conv.turns) - self.saved_turns if self.conv is not None else 0

    def _goodbye(self) -> None:
        unsaved = self._unsaved()
        if unsaved and self.tty and not self.args.quiet:
            _say(f"{unsaved} turn(s) not saved (/save FILE keeps a conversation for --resume)")

    def _trace_note(self) -> str:
        path = getattr(self.config.observe.logger, "last_path", None) if self.in_turn else None
        return f"; the trace is {path} (open it with: rlm view {path} --open)" if path else ""

    # -- commands -----------------------------------------------------------------------
    def _command(self, line: str) -> bool:
        """Run a ``/command``; True when the chat should end."""
        name, _, rest = line.partition(" ")
        if name in ("/quit", "/exit"):
            return True
        if name == "/save":
            if not rest.strip():
                _say("usage: /save FILE")
            else:
                with _reported():
                    self.save(Path(rest.strip()))
                    assert self.conv is not None
                    _say(
                        f"saved {len(self.conv.turns)} turn(s) to {rest.strip()} (continue with: "
                        f"rlm chat --context {self.args.context} --resume {rest.strip()})"
                    )
            return False
        if name != "/help":
            _say(f"unknown command {name}")
        for usage, doc in COMMANDS.items():
            _say(f"  {usage.ljust(11)} {doc}")
        return False

    def save(self, path: Path) -> None:
        assert self.conv is not None
        data = self.conv.to_dict()
        data[SAVED_KEY] = {
            "version": 1,
            "context": self.args.context,
            "context_sha256": context_digest(self.context),
        }
        write_saved(path, data)
        self.saved_turns = len(self.conv.turns)

    # -- turns --------------------------------------------------------------------------
    def _turn(self, query: str) -> None:
        from rlm_engine.logger import IterationRecorder
        from rlm_engine.progress import Progress

        assert self.conv is not None
        show = not (self.args.quiet or self.args.options.get("verbose"))
        progress = Progress(sys.stderr)
        recorder = IterationRecorder()
        handlers: list[Callable[[dict[str, Any]], None]] = [recorder]
        if show:
            handlers.append(progress)
        first = not self.conv.turns and not self.args.quiet
        self.in_turn = True
        try:
            with progress if show else contextlib.nullcontext():
                res = self.loop.run(self._drive(query, handlers, recorder, first))
        except Exception as e:  # a failed turn is a result; this is a refusal or a crash
            self.in_turn = False
            if getattr(self.args, "debug", False):
                traceback.print_exc()
            message = " ".join(str(e).split()) or type(e).__name__
            _say(
                f"error: {type(e).__name__}: {message} (the turn was dropped; the REPL and "
                "earlier turns are kept)"
            )
            return
        self.in_turn = False
        self._show(res)
        if self.args.save:
            with _reported():
                self.save(Path(self.args.save))

    async def _drive(
        self,
        query: str,
        handlers: list[Callable[[dict[str, Any]], None]],
        recorder: Any,
        first: bool,
    ) -> RLMResult:
        """One turn, as ``Conversation.asend`` runs it, plus the command's additions: the
        estimate before a first turn over a large context, and on Ctrl-C (the task is
        cancelled) the trace's ``interrupted`` ending."""
        from rlm_engine.session import run

        assert self.conv is not None

        def on_event(event: dict[str, Any]) -> None:
            for handler in handlers:
                handler(event)

        session = await self.conv.open_turn(query, on_event=on_event)
        if first:
            _say_estimate(session, self.config.run)
        try:
            result = await run(session)
        except BaseException as e:
            self.conv.abandon_turn(session)  # not recorded; the next turn may start
            logger = self.config.observe.logger
            if isinstance(e, asyncio.CancelledError) and logger is not None:
                logger.log_interrupted(session, recorder.partial())
            raise
        await self.conv.end_turn(session, result)
        return result

    def _show(self, res: RLMResult) -> None:
        assert self.conv is not None
        if res.response is not None:
            print(res.response, flush=True)
        elif res.partial_answer is not None and res.status != "error":
            print(res.partial_answer, flush=True)
        for warning in res.warnings:  # shown even with --quiet: the answer may not be trusted
            _say(f"warning: {warning}")
        if res.status == "error":
            _say(f"error: {' '.join((res.error or 'the turn failed').split())}")
        elif res.status != "final":
            detail = f": {res.error}" if res.error else ""
            _say(f"no final answer within the limits ({res.status}){detail}")
        if self.args.quiet:
            return
        total = UsageTotals()
        for turn in self.conv.turns:
            total.absorb(_totals(turn.usage))
        _say(turn_line(len(self.conv.turns), res, total, len(self.conv.turns)))
        path = getattr(self.config.observe.logger, "last_path", None)
        if path:
            _say(f"trace: {path}")


@contextlib.contextmanager
def _reported() -> Any:
    """A failed command is said and the chat goes on."""
    try:
        yield
    except CLIError as e:
        _say(f"error: {e}")


# ----------------------------------------------------------------------------- command


def cmd_chat(args: argparse.Namespace) -> int:
    if args.context == "-":
        raise CLIError(
            "rlm chat reads its questions from stdin, so --context cannot be - : pass a file "
            "or a directory",
            EXIT_USAGE,
        )
    saved = read_saved(args.resume) if args.resume else None
    context = load_context(args.context)
    if saved is not None:
        check_resume_context(saved, context, args)
    backend, why = choose_backend(args)
    if not args.quiet:
        _say(f"backend: {backend} ({why})")
    config = run_config(args, backend)
    if sys.stdin is not None and sys.stdin.isatty():
        with contextlib.suppress(ImportError):  # line editing and history for input()
            import readline  # noqa: F401
    return Chat(args, config, context).run(saved)


def chat_epilog() -> str:
    from rlm_engine.config import RunLimits
    from rlm_engine.estimate import budget_words

    commands = "; ".join(f"{usage}: {doc}" for usage, doc in COMMANDS.items())
    text = (
        "Each line on stdin is a turn; its answer goes to stdout, progress and a usage line "
        "(the turn, and the conversation so far) to stderr. Variables a turn computes stay in "
        f"the REPL for later turns. Commands: {commands}. Budgets apply to each turn: "
        f"{', '.join(budget_words(RunLimits()))} by default (none removes one). Exit codes: "
        f"{EXIT_OK} after /quit or EOF; {EXIT_ERROR} error; {EXIT_USAGE} usage error (bad "
        f"flags, an empty context, --resume with other material); {EXIT_INTERRUPTED} "
        "interrupted by Ctrl-C."
    )
    return textwrap.fill(text, width=78, break_on_hyphens=False)


def add_chat_parser(sub: Any) -> None:
    """``rlm chat`` and its flags (the engine options' flags are ``rlm run``'s)."""
    chat = sub.add_parser(
        "chat",
        help="an interactive conversation about a context",
        description="Ask question after question about --context; one REPL keeps every "
        "turn's variables.",
        epilog=chat_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chat.add_argument(
        "--context",
        "-c",
        required=True,
        metavar="FILE|DIR",
        help="a text file, or a directory (list of its text files)",
    )
    chat.add_argument(
        "--resume",
        metavar="FILE",
        help="continue a conversation written by /save FILE (give the same --context)",
    )
    chat.add_argument(
        "--save",
        metavar="FILE",
        help="write the conversation to FILE after every turn (resume it with --resume FILE)",
    )
    add_option_flags(chat, list(BACKENDS))
    chat.add_argument(
        "--quiet",
        action="store_true",
        help="no progress, estimate or usage lines on stderr (errors and warnings still show)",
    )
    chat.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )
    chat.set_defaults(func=cmd_chat)


__all__ = ["COMMANDS", "Chat", "add_chat_parser", "cmd_chat", "context_digest", "turn_line"]
