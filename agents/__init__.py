"""The decomposition agent: decompose a question, retrieve per sub-question, merge, rerank.

Public surface::

    from adaptrank.agents import DecompositionAgent, AgentConfig, ChromaRetriever, SearchResult
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentConfig",
    "ChromaRetriever",
    "Decomposition",
    "DecompositionAgent",
    "Passage",
    "Provenance",
    "SearchResult",
    "Trace",
    "decompose",
    "rule_split",
]

_WHERE = {
    "AgentConfig": "adaptrank.agents.agent",
    "DecompositionAgent": "adaptrank.agents.agent",
    "ChromaRetriever": "adaptrank.agents.retrieval",
    "Decomposition": "adaptrank.agents.decompose",
    "decompose": "adaptrank.agents.decompose",
    "rule_split": "adaptrank.agents.decompose",
    "Passage": "adaptrank.agents.results",
    "Provenance": "adaptrank.agents.results",
    "SearchResult": "adaptrank.agents.results",
    "Trace": "adaptrank.agents.results",
}


def __getattr__(name: str) -> Any:  # lazy: importing the package must not import torch or chromadb
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(name)
