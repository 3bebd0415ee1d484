"""Plain data types shared by every part of the engine.

They are dataclasses with ``to_dict``/``from_dict`` so a run can be logged as JSON and
checkpointed by LangGraph without pickling live objects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["final", "max_iterations", "budget", "timeout", "error"]
Message = dict[str, Any]  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass
class LMResponse:
    """One LM answer with the usage the provider reported."""

    text: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    #: Of ``input_tokens``, how many the provider read from its prompt cache (OpenAI
    #: ``cached_tokens``, Anthropic ``cache_read_input_tokens``) and how many it wrote to it
    #: (Anthropic ``cache_creation_input_tokens``); ``cost`` prices them at cached rates.
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    #: The reply stopped at the reply cap (OpenAI ``finish_reason == "length"``, Anthropic
    #: ``stop_reason == "max_tokens"``): it is cut, not complete.
    truncated: bool = False
    #: The server reported no usage (a stream without a usage chunk, an abandoned call):
    #: the token counts are the client's estimate.
    usage_estimated: bool = False


@dataclass
class SubCall:
    """A call made from REPL code (``llm_query``, ``rlm_query``, a bound tool, ...)."""

    function: str
    prompt: str
    response: str
    model: str | None = None
    depth: int = 1
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    latency: float = 0.0
    error: str | None = None
    replayed: bool = False
    prompt_chars: int = 0  # full length; ``prompt`` keeps only head and tail of long prompts
    prompt_sha: str = ""  # identifies the prompt for replay after a crash
    # For rlm_query: the child's trajectory (its iterations), so viewers can nest it.
    children: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False  # the answer was cut at the reply cap (and says so at its end)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SubCall:
        return cls(**d)


@dataclass
class CodeBlockResult:
    """What one code block did in the REPL."""

    code: str
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    final: str | None = None  # set when the code called FINAL / FINAL_VAR
    timed_out: bool = False
    crashed: bool = False
    duration: float = 0.0
    subcalls: list[SubCall] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["subcalls"] = [s.to_dict() for s in self.subcalls]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CodeBlockResult:
        d = dict(d)
        d["subcalls"] = [SubCall.from_dict(s) for s in d.get("subcalls", [])]
        return cls(**d)


@dataclass
class Iteration:
    """One turn of the loop: the root response and what its code did."""

    index: int
    response: str
    code_blocks: list[CodeBlockResult] = field(default_factory=list)
    final_answer: str | None = None
    feedback: str = ""  # the text sent back to the root LM for this turn
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    root_latency: float = 0.0
    duration: float = 0.0

    @property
    def subcalls(self) -> list[SubCall]:
        return [s for b in self.code_blocks for s in b.subcalls]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["code_blocks"] = [b.to_dict() for b in self.code_blocks]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Iteration:
        d = dict(d)
        d["code_blocks"] = [CodeBlockResult.from_dict(b) for b in d.get("code_blocks", [])]
        return cls(**d)


@dataclass
class ExecResult:
    """What an environment reports for one executed cell."""

    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    final: str | None = None
    timed_out: bool = False
    crashed: bool = False
    duration: float = 0.0
