"""Framework adapters. LlamaIndex (``pip install 'adaptrank[llamaindex]'``)::

    from adaptrank.integrations import AdaptRankRerank, AdaptRankDecomposeRetriever, AdaptRankEmbedding

Names resolve lazily, so importing this package never imports llama-index (a missing extra is
reported, with its pip command, when a name is first used).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AdaptRankDecomposeRetriever",
    "AdaptRankEmbedding",
    "AdaptRankRerank",
    "LlamaIndexLLM",
    "LlamaIndexRetrieverAdapter",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from adaptrank.integrations import llamaindex

        return getattr(llamaindex, name)
    raise AttributeError(name)
