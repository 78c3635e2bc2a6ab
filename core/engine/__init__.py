"""The scoring engine. ``Reranker`` is its one entry point; backends live behind it."""

from adaptrank.core.engine.base import Scorer
from adaptrank.core.engine.reranker import ModelInfo, Reranker

__all__ = ["ModelInfo", "Reranker", "Scorer"]
