"""Shared core of adaptrank: settings, model store, scoring engine, LLM backends, document store.

Public surface: :class:`Reranker` (the one scoring entry point every part calls), the result models,
:class:`Settings` and :class:`ModelStore`.
"""

from adaptrank.core.errors import AdaptRankError, InputError, NotFoundError
from adaptrank.core.results import Document, RerankResponse, RerankResult
from adaptrank.core.settings import Settings, get_settings

__version__ = "0.1.0"

__all__ = [
    "AdaptRankError",
    "Document",
    "InputError",
    "ModelStore",
    "NotFoundError",
    "RerankResponse",
    "RerankResult",
    "Reranker",
    "Settings",
    "__version__",
    "get_settings",
]


def __getattr__(name: str):  # lazy: importing the settings must not import torch
    if name == "Reranker":
        from adaptrank.core.engine import Reranker

        return Reranker
    if name == "ModelStore":
        from adaptrank.core.modelstore import ModelStore

        return ModelStore
    raise AttributeError(name)
