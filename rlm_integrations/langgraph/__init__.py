"""LangGraph integration: the RLM loop as a graph, and an RLM node for any agent graph.

``build_rlm_graph(...)`` returns the loop (``generate`` -> ``execute`` -> ``check_final``)
as a ``StateGraph`` to compile with any checkpointer; ``RLMNode(...)`` runs it as a
subgraph inside a ``MessagesState`` (or custom) graph.
"""

from rlm_integrations.langgraph.agent_node import RLMNode
from rlm_integrations.langgraph.graph import (
    NODES,
    RLMStateGraph,
    build_rlm_graph,
    default_retry_policy,
    recursion_limit_for,
)
from rlm_integrations.langgraph.runtime import REGISTRY, close_all_sessions
from rlm_integrations.langgraph.state import IterationRecord, RLMGraphState, RLMInput, RLMOutput
from rlm_integrations.langgraph.steps import RootLMCallError

__all__ = [
    "NODES",
    "REGISTRY",
    "IterationRecord",
    "RLMGraphState",
    "RLMInput",
    "RLMNode",
    "RLMOutput",
    "RLMStateGraph",
    "RootLMCallError",
    "build_rlm_graph",
    "close_all_sessions",
    "default_retry_policy",
    "recursion_limit_for",
]
