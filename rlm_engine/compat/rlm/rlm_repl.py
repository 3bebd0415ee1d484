"""``RLM_REPL`` of the minimal ``rlm_repl`` library, on the engine.

``RLM_REPL(model="auto", recursive_model="auto", max_iterations=10,
max_output_length=500000)`` talks to the OpenAI-compatible server at ``RLM_API_URL``
(default ``http://localhost:8080/v1``); ``"auto"`` takes the first model the server lists
at ``/models``, asked once per instance with the server's window and chat template. ``completion(context=..., query=...)``
returns the answer, or None when ``max_iterations`` run out without one (the seed's
"natural convergence": no extra answer is requested). ``cost_summary()`` adds up every
completion since the last ``reset()``, root and sub-LM apart, from the usage the server
reported.

Unlike the seed, a run also stops at the engine's budgets and per-request timeout, and
generated code runs isolated (``environment="auto"``); engine options are accepted by
name (``RLM_REPL(..., environment="local", run_timeout=600)``); ``enable_logging=True``
(alexzhang13/rlm-minimal's keyword) prints each turn like ``verbose=True``. A run that stops on such a
limit or an error raises instead of returning None, so None always means "iterations ran
out".
"""

from __future__ import annotations

import os
from typing import Any

from rlm_engine.clients.openai import DEFAULT_LOCAL_URL
from rlm_engine.clients.server_info import probe
from rlm_engine.compat.rlm.results import raise_if_stopped
from rlm_engine.rlm import RLM as EngineRLM
from rlm_engine.state import RLMResult
from rlm_engine.usage import UsageTotals
from rlm_engine.windows import drops_system

#: Seconds the one ``/models`` lookup of ``model="auto"`` may take.
AUTO_LOOKUP_TIMEOUT = 30.0

#: What ``RLM_REPL`` sets itself; passing one of these by the engine's name is an error.
_OWN = ("backend", "base_url", "api_key", "model", "sub_model", "max_iterations")


class RLM_REPL:  # noqa: N801 - the seed library's name
    """A Recursive Language Model over an OpenAI-compatible server (``RLM_API_URL``)."""

    def __init__(
        self,
        api_key: str | None = None,
        model: str = "gpt-5",
        recursive_model: str = "gpt-5-mini",
        max_iterations: int = 20,
        max_output_length: int = 500_000,
        depth: int = 0,
        enable_logging: bool = False,
        **options: Any,
    ) -> None:
        if depth != 0:
            raise ValueError(
                f"depth={depth} has no equivalent here: sub-calls are plain LM calls at depth "
                "1; for child RLMs with their own REPL pass max_depth=2 (an engine option)"
            )
        given = sorted(set(_OWN) & set(options))
        if given:
            raise TypeError(
                f"RLM_REPL sets {', '.join(given)} itself: use model=, recursive_model=, "
                "api_key=, max_iterations= and RLM_API_URL (or use rlm_engine.RLM)"
            )
        options.setdefault("max_output_chars", max_output_length)
        if enable_logging:  # alexzhang13/rlm-minimal's switch for its console log
            options.setdefault("verbose", True)
        self.api_key = api_key
        self.model = model
        self.recursive_model = recursive_model
        self.max_iterations = max_iterations
        self.max_output_length = max_output_length
        self.depth = depth
        self.base_url = os.environ.get("RLM_API_URL") or DEFAULT_LOCAL_URL
        self.engine = EngineRLM(
            backend="openai",
            base_url=self.base_url,
            api_key=api_key,
            model=model,
            sub_model=recursive_model,
            max_iterations=max_iterations,
            final_answer_on_max_iterations=False,
            **options,
        )
        self._options = options  # what the caller set, kept for the "auto" lookup
        self.query: str | None = None
        self.last_result: RLMResult | None = None
        self._root = UsageTotals()
        self._sub = UsageTotals()
        self._unpriced = False  # a call since reset() had no known price

    def completion(self, context: Any, query: str | None = None) -> str | None:
        """The answer to ``query`` about ``context``; None when the iterations ran out."""
        self.query = query
        self._resolve_auto()
        result = self.engine.completion(context, query)
        self.last_result = result
        self._root.absorb(result.usage.root)
        self._sub.absorb(result.usage.sub)
        self._unpriced |= any(r.cost is None for r in result.usage.records)
        if result.status == "max_iterations":
            return None
        raise_if_stopped(result, self.engine.config)
        return result.response

    def _resolve_auto(self) -> None:
        """Settle ``"auto"`` once for this instance: the server's first listed model, and
        what the server says of its window and chat template, become the engine's options.

        Otherwise the engine, which makes fresh clients for every completion, would list
        the models (and probe the window) again on every call. A new ``RLM_REPL`` asks
        again, so a server restarted with another model is picked up.
        """
        if "auto" not in (self.model, self.recursive_model):
            return
        config = self.engine.config
        if config.models.model != "auto" and config.models.sub_model != "auto":
            return  # settled by an earlier completion
        first = _first_model(self.base_url, self.api_key)
        model = first if self.model == "auto" else self.model
        sub = first if self.recursive_model == "auto" else self.recursive_model
        changes: dict[str, Any] = {"model": model, "sub_model": sub}
        if model == sub == first:  # both on the listed model: its facts serve both
            facts = probe(self.base_url, first, _auth(self.api_key))
            kwargs = dict(config.models.backend_kwargs or {})
            if facts.window is not None and "context_window" not in kwargs:
                changes["backend_kwargs"] = {**kwargs, "context_window": facts.window}
            if facts.chat_template is not None and "system_as_user" not in self._options:
                changes["system_as_user"] = drops_system(first, facts.chat_template)
        self.engine = EngineRLM(config.replace(**changes))

    def cost_summary(self) -> dict[str, Any]:
        """Cost, tokens and calls of the root LM and the sub-LM since the last ``reset()``.

        Costs are USD where the model's price is known and 0.0 where it is not (a local
        model); ``cost_known`` says whether every call had a price.
        """
        root, sub = self._root, self._sub
        return {
            "total_cost": (root.cost or 0.0) + (sub.cost or 0.0),
            "root_llm_cost": root.cost or 0.0,
            "sub_llm_cost": sub.cost or 0.0,
            "root_llm_tokens": root.total_tokens,
            "sub_llm_tokens": sub.total_tokens,
            "root_llm_calls": root.calls,
            "sub_llm_calls": sub.calls,
            "cost_known": not self._unpriced,
        }

    def reset(self) -> None:
        """Forget the counts and the last query (each completion has a fresh REPL anyway)."""
        self.query = None
        self.last_result = None
        self._root = UsageTotals()
        self._sub = UsageTotals()
        self._unpriced = False  # a call since reset() had no known price


def _auth(api_key: str | None) -> dict[str, str]:
    key = api_key or os.environ.get("OPENAI_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def _first_model(base_url: str, api_key: str | None) -> str:
    """The first model the server at ``base_url`` lists (``model="auto"``)."""
    import openai

    key = api_key or os.environ.get("OPENAI_API_KEY") or "not-needed"
    try:
        with openai.OpenAI(
            base_url=base_url, api_key=key, timeout=AUTO_LOOKUP_TIMEOUT, max_retries=1
        ) as client:
            models = [m.id for m in client.models.list().data]
    except openai.OpenAIError as e:
        raise RuntimeError(
            f"model='auto' takes the first model the server lists, but listing models at "
            f"{base_url}/models failed ({e}). Is the server running at RLM_API_URL? Or "
            "name the model: RLM_REPL(model=..., recursive_model=...)."
        ) from e
    if not models:
        raise RuntimeError(
            f"model='auto': the server at {base_url} lists no model. Name the model: "
            "RLM_REPL(model=..., recursive_model=...)."
        )
    return models[0]


__all__ = ["RLM_REPL"]
