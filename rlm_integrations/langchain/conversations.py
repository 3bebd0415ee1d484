"""Chat-model calls that continue a conversation instead of starting over.

A chat model is called with the whole conversation each time. When a call's messages
extend an earlier call's messages and its answer (the same prefix, then new messages),
and the constructor/call ``context`` is the same, the new call is the next turn of that
conversation: it runs in the same REPL (an engine :class:`~rlm_engine.conversation.
Conversation`), so the variables earlier turns computed are there and the material they
read is not read again. New material in the new messages goes into the REPL as
``context_1``, ``context_2``...; the root sees a digest of the earlier turns.

A one-off call holds no REPL open: its turn is remembered as data (its code and recorded
sub-call answers, like a checkpoint), and only a call that continues it rebuilds the REPL
by replay (no LM call is paid again), then keeps it live for the next turn. A
``configurable`` ``thread_id`` (or ``session_id``) of the call, as LangGraph sets, keeps
conversations of different threads apart. Conversations idle for ``idle_seconds`` or past
``max_live`` are closed, least recently used first.

Conversations live on one private event loop (their REPLs and clients are bound to it);
continuation turns report progress to synchronous callback handlers.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage

from rlm_engine import prompts
from rlm_engine.aio import LoopThread
from rlm_engine.config import RLMConfig
from rlm_engine.conversation import Conversation, Turn
from rlm_engine.session import RLMSession
from rlm_engine.state import RLMResult
from rlm_integrations.langchain.messages import message_text

#: How long a conversation may sit unused, how many may be remembered at once, and how
#: many characters of material they may hold together (a remembered conversation keeps
#: its context alive, so a process of large one-off calls stays bounded).
IDLE_SECONDS = 900.0
MAX_LIVE = 16
MAX_CHARS = 256_000_000

Signature = tuple[tuple[str, str], ...]


def signature(messages: Sequence[BaseMessage]) -> Signature:
    """What identifies a conversation's messages: their type and text."""
    return tuple((m.type, message_text(m)) for m in messages)


def fingerprint(value: Any) -> str:
    """A digest of a context or a configuration (what must match to continue)."""
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    else:
        data = json.dumps(value, sort_keys=True, default=repr).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


@dataclass
class Thread:
    """One remembered conversation: its transcript so far and, once continued, its REPL."""

    transcript: Signature
    context: Any
    context_sha: str
    config_sha: str
    thread_id: str | None
    turns: list[Turn]
    conversation: Conversation | None = None
    #: Characters of material it holds (its context's, as described to the root).
    size: int = 0
    busy: bool = False
    last_used: float = field(default_factory=time.monotonic)


class ConversationStore:
    """Remembered conversations of the chat models of this process (see module docs)."""

    def __init__(
        self,
        max_live: int = MAX_LIVE,
        idle_seconds: float = IDLE_SECONDS,
        max_chars: int = MAX_CHARS,
    ) -> None:
        self.max_live = max_live
        self.idle_seconds = idle_seconds
        self.max_chars = max_chars
        self._threads: OrderedDict[int, Thread] = OrderedDict()
        self._ids = iter(range(1 << 62))
        self._lock = threading.Lock()
        self._loop: LoopThread | None = None
        #: How many REPLs were rebuilt by replay to continue a conversation (diagnostics).
        self.rebuilds = 0

    @property
    def loop(self) -> LoopThread:
        with self._lock:
            if self._loop is None:
                self._loop = LoopThread("rlm-langchain-conversations")
            return self._loop

    def __len__(self) -> int:
        return len(self._threads)

    # -- matching ---------------------------------------------------------------------------
    def claim(
        self, messages: Signature, context_sha: str, config_sha: str, thread_id: str | None
    ) -> tuple[int, Thread] | None:
        """The conversation ``messages`` continue (marked busy), if any."""
        with self._lock:
            best: tuple[int, Thread] | None = None
            for key, t in self._threads.items():
                n = len(t.transcript)
                if (
                    not t.busy
                    and n < len(messages)
                    and messages[:n] == t.transcript
                    and t.context_sha == context_sha
                    and t.config_sha == config_sha
                    and t.thread_id == thread_id
                    and (best is None or n > len(best[1].transcript))
                ):
                    best = (key, t)
            if best is not None:
                best[1].busy = True
                self._threads.move_to_end(best[0])
            return best

    def remember_run(
        self,
        transcript: Signature,
        context: Any,
        context_sha: str,
        config_sha: str,
        thread_id: str | None,
        session: RLMSession,
        result: RLMResult,
    ) -> None:
        """Remember a one-off call as a conversation that a later call may continue."""
        turn = Turn.from_run(session, result, [])
        thread = Thread(transcript, context, context_sha, config_sha, thread_id, [turn])
        thread.size = int(session.state.context_info.get("total_chars", 0))
        with self._lock:
            self._threads[next(self._ids)] = thread
        self.loop.submit(self.evict())

    def release(self, key: int, transcript: Signature | None) -> None:
        """End a continuation: the conversation now ends with ``transcript`` (None: it
        failed and is forgotten)."""
        with self._lock:
            thread = self._threads.get(key)
            if thread is None:
                return
            if transcript is None:
                self._threads.pop(key, None)
            else:
                thread.transcript = transcript
                thread.busy = False
                thread.last_used = time.monotonic()
        if transcript is None and thread.conversation is not None:
            self.loop.submit(thread.conversation.aclose())
        self.loop.submit(self.evict())

    # -- the REPL of a conversation (on the store's loop) -----------------------------------
    async def conversation_for(self, thread: Thread, config: RLMConfig) -> Conversation:
        """The live conversation, or one rebuilt by replay from its remembered turns."""
        if thread.conversation is not None:
            return thread.conversation
        data = {
            "contexts": [
                {"name": "context", "info": prompts.describe_context(thread.context), "turn": 0}
            ],
            "turns": [t.to_dict() for t in thread.turns],
        }
        conv = await Conversation.arestore(config, data, {"context": thread.context})
        thread.conversation = conv
        self.rebuilds += 1
        return conv

    async def evict(self) -> None:
        """Close conversations idle too long, past ``max_live`` or past ``max_chars`` of
        material together (least recently used first)."""
        now = time.monotonic()
        with self._lock:
            idle = [k for k, t in self._threads.items() if not t.busy]
            stale = [k for k in idle if now - self._threads[k].last_used > self.idle_seconds]
            excess = max(0, len(self._threads) - self.max_live)
            drop = list(dict.fromkeys(stale + idle[:excess]))
            held = sum(t.size for k, t in self._threads.items() if k not in drop)
            for k in idle:
                if held <= self.max_chars:
                    break
                if k not in drop:
                    drop.append(k)
                    held -= self._threads[k].size
            closing = [self._threads.pop(k) for k in drop]
        for thread in closing:
            if thread.conversation is not None:
                await thread.conversation.aclose()

    async def aclose_all(self) -> None:
        with self._lock:
            closing = list(self._threads.values())
            self._threads.clear()
        for thread in closing:
            if thread.conversation is not None:
                await thread.conversation.aclose()


#: The process's store: every ``RLMChatModel`` remembers its conversations here.
STORE = ConversationStore()

__all__ = ["STORE", "ConversationStore", "Thread", "fingerprint", "signature"]
