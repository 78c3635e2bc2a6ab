"""The scoring engine. ``Reranker`` is its one entry point; backends live behind it.

``ModelIdentity`` is what a score reports about its model; :mod:`adaptrank.core.engine.models`
answers model questions without a ``Reranker`` (the registry behind both is private).
"""

from adaptrank.core.engine.base import ModelIdentity, Scorer
from adaptrank.core.engine.reranker import ModelInfo, Reranker

__all__ = ["ModelIdentity", "ModelInfo", "Reranker", "Scorer"]
