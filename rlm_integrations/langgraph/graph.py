"""``build_rlm_graph``: the RLM loop as a LangGraph ``StateGraph``.

``generate`` -> ``execute`` -> ``check_final`` -> ``generate`` | END, where each node is
one of the engine's own session steps (see :mod:`rlm_integrations.langgraph.steps`).
``generate`` goes straight to ``check_final`` when a budget stopped the root call.
With ``mode="direct"|"auto"`` a ``route`` node comes first: it answers with one direct LM
call and ends, or hands over to ``generate`` (:mod:`rlm_integrations.langgraph.route`).
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RetryPolicy

from rlm_engine.config import RLMConfig, make_config
from rlm_integrations.langgraph.route import RouteStep, after_route
from rlm_integrations.langgraph.state import RLMGraphState, RLMInput, RLMOutput
from rlm_integrations.langgraph.steps import RLMSteps, RootLMCallError

NODES = ("generate", "execute", "check_final")
#: Supersteps per loop iteration (generate, execute, check_final).
STEPS_PER_ITERATION = 3


def default_retry_policy() -> RetryPolicy:
    """Three attempts of ``generate`` with backoff, for :class:`RootLMCallError` only."""
    return RetryPolicy(max_attempts=3, initial_interval=1.0, retry_on=RootLMCallError)


def recursion_limit_for(max_iterations: int) -> int:
    """The LangGraph recursion limit a run of ``max_iterations`` needs (with headroom)."""
    return STEPS_PER_ITERATION * max_iterations + 10


class RLMStateGraph(StateGraph):
    """A ``StateGraph`` whose ``compile()`` sets a recursion limit that fits the RLM's
    ``max_iterations``: the engine's budgets end the run, never LangGraph's step limit."""

    recursion_limit: int = 100
    #: The RLM configuration the nodes run with.
    rlm_config: RLMConfig | None = None

    def compile(self, *args: Any, **kwargs: Any) -> CompiledStateGraph:
        return super().compile(*args, **kwargs).with_config(recursion_limit=self.recursion_limit)


def _after_generate(state: RLMGraphState) -> str:
    return "execute" if state.get("pending_response") is not None else "check_final"


def _after_check(state: RLMGraphState) -> str:
    return END if state.get("status") is not None else "generate"


def build_rlm_graph(
    config: RLMConfig | None = None,
    *,
    llm: Any = None,
    sub_llm: Any = None,
    review_code: bool = False,
    retry_policy: RetryPolicy | None | Literal["default"] = "default",
    on_error: Literal["raise", "status"] = "raise",
    **options: Any,
) -> RLMStateGraph:
    """The RLM loop as an uncompiled ``StateGraph`` (``generate`` -> ``execute`` ->
    ``check_final`` -> ``generate`` | END).

    Takes the options of ``RLM(...)`` (:class:`~rlm_engine.config.RLMConfig`, flat by name,
    or a ready ``config``); ``llm`` / ``sub_llm`` are LangChain chat models used as
    ``backend`` / ``sub_backend`` (``backend_kwargs`` / ``sub_backend_kwargs`` then go to
    ``LangChainClient``). ``review_code=True`` pauses before each ``execute`` with
    ``interrupt()`` so a person can approve or edit the code (see
    :mod:`rlm_integrations.langgraph.review`). ``retry_policy`` applies to ``generate``;
    ``on_error`` says what happens when it gives up (module docstring).

    Compile it yourself, e.g. ``graph.compile(checkpointer=SqliteSaver(conn))``, and call
    it with ``{"context": ..., "query": ...}``; the output has ``final_answer``,
    ``status``, ``usage`` and ``history``. The configuration is ``graph.rlm_config``.
    """
    if on_error not in ("raise", "status"):
        raise ValueError(f"on_error must be 'raise' or 'status', got {on_error!r}")
    for name, model in (("backend", llm), ("sub_backend", sub_llm)):
        if model is not None:
            if name in options:
                raise TypeError(
                    f"Pass {name}= or {'llm' if name == 'backend' else 'sub_llm'}=, not both"
                )
            options[name] = model
    config = make_config(config, **options)
    policy = default_retry_policy() if retry_policy == "default" else retry_policy
    steps = RLMSteps(
        config,
        review_code=review_code,
        on_error=on_error,
        max_attempts=policy.max_attempts if policy is not None else 1,
    )
    graph = RLMStateGraph(RLMGraphState, input_schema=RLMInput, output_schema=RLMOutput)
    graph.recursion_limit = recursion_limit_for(config.run.max_iterations)
    graph.rlm_config = config
    graph.add_node(
        "generate",
        RunnableLambda(steps.generate, steps.agenerate, name="generate"),
        retry_policy=policy,
    )
    graph.add_node("execute", RunnableLambda(steps.execute, steps.aexecute, name="execute"))
    graph.add_node(
        "check_final",
        RunnableLambda(steps.check_final, steps.acheck_final, name="check_final"),
    )
    if config.run.mode == "rlm":
        graph.add_edge(START, "generate")
    else:  # mode direct/auto: one direct LM call may answer before the loop (route.py)
        router = RouteStep(config)
        graph.add_node("route", RunnableLambda(router.route, router.aroute, name="route"))
        graph.add_edge(START, "route")
        graph.add_conditional_edges("route", after_route, {"generate": "generate", END: END})
        graph.recursion_limit += 1
    graph.add_conditional_edges(
        "generate", _after_generate, {"execute": "execute", "check_final": "check_final"}
    )
    graph.add_edge("execute", "check_final")
    graph.add_conditional_edges("check_final", _after_check, {"generate": "generate", END: END})
    return graph
