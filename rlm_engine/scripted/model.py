"""A deterministic chat model, so tests, demos and benchmarks run without a real LLM.

``ScriptedModel.respond`` answers a normalized :class:`Request` with a :class:`Reply`:
first from user rules (``add_rule``), then skills added with ``add_skill``, then the
standard skills every new model has (the integrations' prompt formats, see
:mod:`rlm_engine.scripted.skills`; ``ScriptedModel.bare()`` has none), then the built-in
policies of :mod:`rlm_engine.scripted.policy`. The same model serves the
OpenAI and the Anthropic wire formats, so requests are normalized to OpenAI-style
messages with text content before any rule sees them.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Api = Literal["openai", "anthropic"]
ToolCall = dict[str, Any]  # {"name": str, "arguments": dict, "id": str}


def content_text(content: Any) -> str:
    """Text of a message content: a str, or a list of OpenAI/Anthropic content parts.

    Non-text parts (images, audio) are skipped; tool results contribute their text so the
    model (and the token count) sees what a tool returned.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        content = [content]
    if not isinstance(content, list):
        return str(content)
    texts: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, Mapping):
            kind = part.get("type")
            if kind in ("text", "input_text", "output_text") and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind == "tool_result":
                texts.append(content_text(part.get("content")))
    return "\n".join(t for t in texts if t)


@dataclass
class Request:
    """One chat request, whichever API it came through.

    ``messages`` are OpenAI-style dicts whose ``content`` is already plain text; the
    system prompt (Anthropic's ``system`` parameter included) is the first message.
    """

    messages: list[dict[str, Any]]
    model: str = "scripted-root"
    api: Api = "openai"
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    stream: bool = False
    max_tokens: int | None = None
    stop: list[str] | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    #: ``(read, written)`` prompt-cache tokens, set by the server (``scripted.cache``).
    cache: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        self.messages = [{**m, "content": content_text(m.get("content"))} for m in self.messages]
        if isinstance(self.stop, str):
            self.stop = [self.stop]

    @property
    def system(self) -> str:
        """All system (or developer) message text, or ``""``."""
        return "\n\n".join(
            m["content"] for m in self.messages if m.get("role") in ("system", "developer")
        )

    @property
    def last_user(self) -> str:
        """Text of the last user message (``""`` when there is none)."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return m["content"]
        return ""

    @property
    def first_user(self) -> str:
        for m in self.messages:
            if m.get("role") == "user":
                return m["content"]
        return ""

    @property
    def is_rlm_root(self) -> bool:
        """True when the system prompt is the RLM root prompt (see ``rlm_engine.prompts``),
        also when it came as the first user turn (chat templates without a system role)."""
        system = self.system or (self.messages[0]["content"] if self.messages else "")
        return "llm_query" in system and "FINAL(" in system

    @property
    def turn(self) -> int:
        """Number of assistant messages so far (0 on the first call of a conversation)."""
        return sum(1 for m in self.messages if m.get("role") == "assistant")

    @property
    def total_chars(self) -> int:
        return sum(len(m["content"]) for m in self.messages)


@dataclass
class Reply:
    """What the model answers. ``latency`` is extra server-side delay, in seconds."""

    text: str = ""
    tool_calls: list[ToolCall] | None = None
    finish_reason: str = "stop"  # stop | length | tool_calls | stop_sequence
    latency: float = 0.0
    stop_sequence: str | None = None  # which ``stop`` string ended the text

    def __post_init__(self) -> None:
        if self.tool_calls:
            calls = []
            for i, call in enumerate(self.tool_calls):
                args = call.get("arguments") or {}
                if isinstance(args, str):
                    args = json.loads(args) if args.strip() else {}
                calls.append(
                    {"name": call["name"], "arguments": args, "id": call.get("id") or f"call_{i}"}
                )
            self.tool_calls = calls
            if self.finish_reason == "stop":
                self.finish_reason = "tool_calls"

    @property
    def completion_text(self) -> str:
        """The text the completion tokens are counted on: text plus tool arguments."""
        if not self.tool_calls:
            return self.text
        args = "".join(json.dumps(c["arguments"]) for c in self.tool_calls)
        return self.text + args


Matcher = Callable[[Request], bool] | str | re.Pattern[str] | Mapping[str, Any]
Responder = str | Reply | list[str] | Callable[[Request], "str | Reply"]
Skill = Callable[[Request], "Reply | None"]


@dataclass
class _Rule:
    name: str
    match: Matcher
    respond: Responder
    times: int | None
    latency: float | None
    fired: int = 0

    def matches(self, req: Request) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        m = self.match
        if isinstance(m, str):
            return re.search(m, req.last_user) is not None
        if isinstance(m, re.Pattern):
            return m.search(req.last_user) is not None
        if isinstance(m, Mapping):
            return all(_field_matches(getattr(req, k), v) for k, v in m.items())
        return bool(m(req))


def _field_matches(actual: Any, expected: Any) -> bool:
    if isinstance(expected, re.Pattern):
        return isinstance(actual, str) and expected.search(actual) is not None
    return actual == expected


class ScriptedModel:
    """Deterministic chat model: user rules, then skills, then the built-in RLM policies.

    A new model speaks every protocol the package uses: besides the engine's own RLM
    prompts it has the standard skills of :mod:`rlm_engine.scripted.skills` (RLMChatModel's
    tool calls and structured output, DSPy's adapter formats), so the server and
    ``backend="scripted"`` drive every integration with no set-up. ``skills=False`` (or
    :meth:`bare`) leaves them out, for tests of the policies alone or of what an
    integration does when the model ignores its format.

    Thread-safe: the HTTP server calls ``respond`` from many threads at once.
    """

    def __init__(self, *, skills: bool = True) -> None:
        self._rules: list[_Rule] = []
        self._skills: list[Skill] = []  # added with add_skill: tried first
        self._standard: list[Skill] = []  # the standard skills: tried after those
        self._lock = threading.Lock()
        if skills:
            from rlm_engine.scripted.skills import standard_skills

            self._standard = standard_skills()

    @classmethod
    def bare(cls) -> ScriptedModel:
        """A model without the standard skills: rules, added skills and the policies only."""
        return cls(skills=False)

    def add_rule(
        self,
        match: Matcher,
        respond: Responder,
        times: int | None = None,
        name: str | None = None,
        latency: float | None = None,
    ) -> str:
        """Add a rule; rules are tried in the order they were added.

        ``match``: a callable ``Request -> bool``, a regex searched in the last user
        message, or a dict of ``Request`` attributes to compare (values may be compiled
        regexes). ``respond``: a str, a ``Reply``, a list of str (one per matching call;
        the rule is used up when the list is) or a callable ``Request -> str | Reply``.
        ``times`` caps how often the rule fires; ``latency`` delays its answers.
        Returns the rule's name.
        """
        if isinstance(respond, list):
            if not respond:
                raise ValueError("respond list must not be empty")
            times = len(respond) if times is None else min(times, len(respond))
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        with self._lock:
            rule_name = name or f"rule-{len(self._rules)}"
            self._rules.append(_Rule(rule_name, match, respond, times, latency))
        return rule_name

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def rule_hits(self) -> dict[str, int]:
        """How many times each rule fired, by name."""
        with self._lock:
            return {r.name: r.fired for r in self._rules}

    def add_skill(self, fn: Skill) -> None:
        """Register a fallback ``Request -> Reply | None``.

        Skills added here are tried after the rules, in the order they were added, and
        before the standard skills and the policies.
        """
        with self._lock:
            self._skills.append(fn)

    def remove_skill(self, fn: Skill) -> None:
        """Remove an added or a standard skill (``ValueError`` when the model lacks it)."""
        with self._lock:
            if fn in self._skills:
                self._skills.remove(fn)
            else:
                self._standard.remove(fn)

    def has_skill(self, fn: Skill) -> bool:
        """Whether ``fn`` is one of this model's skills, added or standard."""
        with self._lock:
            return fn in self._skills or fn in self._standard

    @property
    def skills(self) -> list[Skill]:
        """Every skill, in the order they are tried."""
        with self._lock:
            return [*self._skills, *self._standard]

    def respond(self, req: Request) -> Reply:
        """The reply to ``req``, with ``max_tokens`` and ``stop`` applied."""
        reply = self._from_rules(req)
        if reply is None:
            for skill in self.skills:
                reply = skill(req)
                if reply is not None:
                    break
        if reply is None:
            from rlm_engine.scripted.policy import default_reply

            reply = default_reply(req)
        return _apply_limits(req, reply)

    def _from_rules(self, req: Request) -> Reply | None:
        with self._lock:
            rule = next((r for r in self._rules if r.matches(req)), None)
            if rule is None:
                return None
            index = rule.fired
            rule.fired += 1
        # The responder runs outside the lock so slow callables do not serialize requests.
        respond = rule.respond
        if isinstance(respond, list):
            out: str | Reply = respond[index]
        elif callable(respond) and not isinstance(respond, Reply):
            out = respond(req)
        else:
            out = respond
        reply = out if isinstance(out, Reply) else Reply(text=str(out))
        if rule.latency is not None:
            reply = dataclasses.replace(reply, latency=rule.latency)
        return reply

    @staticmethod
    def usage_for(req: Request, reply: Reply) -> tuple[int, int]:
        """``(prompt_tokens, completion_tokens)``: 4 characters per token, at least 1."""
        return max(1, req.total_chars // 4), max(1, len(reply.completion_text) // 4)


def _apply_limits(req: Request, reply: Reply) -> Reply:
    """Cut the text at a stop sequence or at ``max_tokens`` like a real API does."""
    if reply.tool_calls:
        return reply
    text, finish, seq = reply.text, reply.finish_reason, reply.stop_sequence
    hits = [(text.find(s), s) for s in req.stop or [] if s and s in text]
    if hits:
        cut, seq = min(hits)
        text, finish = text[:cut], "stop_sequence"
    if req.max_tokens is not None and len(text) // 4 > req.max_tokens:
        text, finish, seq = text[: req.max_tokens * 4], "length", None
    if text == reply.text and finish == reply.finish_reason:
        return reply
    return Reply(text, None, finish, reply.latency, seq)
