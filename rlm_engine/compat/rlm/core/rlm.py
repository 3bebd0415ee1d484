"""``RLM`` with the constructor and ``completion`` of the paper authors' library.

``RLM(backend=..., backend_kwargs={"model_name": ...}, ...)`` becomes an
:class:`rlm_engine.RLM` (see :mod:`~rlm_engine.compat.rlm.options` for each keyword);
``completion(prompt, root_prompt=None)`` runs it with ``prompt`` as the context and
``root_prompt`` as the query and returns an ``RLMChatCompletion``. As in the seed
library, a run stopped by a limit raises (``TimeoutExceededError``, ...) and a run out of
iterations is answered by one more root call.

Two defaults differ from the seed library's, on purpose: generated code runs in the
strongest isolation the machine has (``environment="auto"``; pass ``environment="local"``
for in-process ``exec`` as there), and every run has the engine's budgets (1,000 LM calls,
20 M tokens, $25; pass ``max_budget=None`` etc. to lift one). Engine options the seed
library lacks (``run_timeout``, ``max_llm_calls``, ``timeout``, ...) are accepted by name.

``persistent=True`` keeps one REPL across completions through an engine
:class:`~rlm_engine.conversation.Conversation`: the first prompt is ``context``, later ones
``context_1``, ``context_2``... (``context_0`` there), earlier turns are in ``history``;
``close()`` (or leaving ``with RLM(...) as rlm:``) ends it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rlm_engine.compat.rlm.options import UNSET, engine_options
from rlm_engine.compat.rlm.results import (
    CancellationError,
    RLMChatCompletion,
    raise_if_stopped,
    root_model,
    usage_summary,
)
from rlm_engine.conversation import Conversation
from rlm_engine.rlm import RLM as EngineRLM
from rlm_engine.state import RLMResult


class RLM:
    """A Recursive Language Model, spelled the way the paper authors' library spells it."""

    def __init__(
        self,
        backend: Any = "openai",
        backend_kwargs: dict[str, Any] | None = None,
        environment: Any = UNSET,
        environment_kwargs: dict[str, Any] | None = None,
        depth: int = 0,
        max_depth: int = 1,
        max_iterations: int = 30,
        max_budget: float | None = UNSET,
        max_timeout: float | None = UNSET,
        max_tokens: int | None = UNSET,
        max_errors: int | None = None,
        custom_system_prompt: str | None = None,
        other_backends: list[Any] | None = None,
        other_backend_kwargs: list[dict[str, Any]] | None = None,
        logger: Any = None,
        verbose: bool = False,
        persistent: bool = False,
        custom_tools: Mapping[str, Any] | None = None,
        custom_sub_tools: Mapping[str, Any] | None = None,
        compaction: bool = False,
        compaction_threshold_pct: float = 0.85,
        max_concurrent_subcalls: int = UNSET,
        on_subcall_start: Callable[[int, str, str], None] | None = None,
        on_subcall_complete: Callable[[int, str, float, str | None], None] | None = None,
        on_iteration_start: Callable[[int, int], None] | None = None,
        on_iteration_complete: Callable[[int, int, float], None] | None = None,
        sampling_args: dict[str, Any] | None = None,
        sub_sampling_args: dict[str, Any] | None = None,
        orchestrator: bool = True,
        user_prologue: str | None = None,
        **options: Any,
    ) -> None:
        mapped = engine_options(
            backend=backend,
            backend_kwargs=backend_kwargs,
            environment=environment,
            environment_kwargs=environment_kwargs,
            depth=depth,
            max_depth=max_depth,
            max_iterations=max_iterations,
            max_budget=max_budget,
            max_timeout=max_timeout,
            max_tokens=max_tokens,
            max_errors=max_errors,
            custom_system_prompt=custom_system_prompt,
            other_backends=other_backends,
            other_backend_kwargs=other_backend_kwargs,
            logger=logger,
            verbose=verbose,
            custom_tools=custom_tools,
            custom_sub_tools=custom_sub_tools,
            compaction=compaction,
            compaction_threshold_pct=compaction_threshold_pct,
            max_concurrent_subcalls=max_concurrent_subcalls,
            on_subcall_start=on_subcall_start,
            on_subcall_complete=on_subcall_complete,
            on_iteration_start=on_iteration_start,
            on_iteration_complete=on_iteration_complete,
            sampling_args=sampling_args,
            sub_sampling_args=sub_sampling_args,
            orchestrator=orchestrator,
            user_prologue=user_prologue,
        )
        twice = sorted(set(mapped) & set(options))
        if twice:
            raise TypeError(
                f"{', '.join(twice)} given twice: once through the seed library's keywords "
                "and once by the engine's name; keep one"
            )
        self.engine = EngineRLM(**mapped, **options)
        self.logger = logger
        self.backend = backend
        self.backend_kwargs = backend_kwargs
        self.max_depth = max_depth
        self.max_iterations = max_iterations
        self.persistent = persistent
        self._conversation: Conversation | None = None

    def completion(
        self, prompt: str | dict[str, Any] | list[Any], root_prompt: str | None = None
    ) -> RLMChatCompletion:
        """Answer ``root_prompt`` about ``prompt`` (the REPL's ``context``), or the task
        stated in ``prompt`` when there is no ``root_prompt``."""
        if self.logger is not None and hasattr(self.logger, "clear_iterations"):
            self.logger.clear_iterations()
        try:
            result = self._run(prompt, root_prompt)
        except KeyboardInterrupt:
            raise CancellationError(message="Execution cancelled by user (Ctrl+C)") from None
        config = self.engine.config
        raise_if_stopped(result, config)
        get_trajectory = getattr(self.logger, "get_trajectory", None)
        return RLMChatCompletion(
            root_model=root_model(result, config),
            prompt=prompt,
            response=result.answer or "",
            usage_summary=usage_summary(result),
            execution_time=result.duration,
            metadata=get_trajectory() if callable(get_trajectory) else None,
            result=result,
        )

    def _run(self, prompt: Any, root_prompt: str | None) -> RLMResult:
        if not self.persistent:
            return self.engine.completion(prompt, root_prompt)
        if self._conversation is None:  # the first context is ``context``
            self._conversation = self.engine.conversation(prompt)
            return self._conversation.send(root_prompt or "")
        # Later contexts are context_1, context_2, ... as in the seed library; a turn
        # with no root_prompt is asked to do what its new context says.
        name = self._conversation.add_context(prompt)
        return self._conversation.send(root_prompt or f"Do what `{name}` asks.")

    def close(self) -> None:
        """End a persistent REPL (each non-persistent completion closes its own)."""
        if self._conversation is not None:
            self._conversation.close()
            self._conversation = None

    def __enter__(self) -> RLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["RLM"]
