"""Models without a ``Reranker``: which model a spec names, and a scorer for a spec or for a
version folder still being written (fine-tuning and import score it before it lands).

The public face of :mod:`adaptrank.core.engine.registry`, which stays private to ``core/engine``;
serving goes through :class:`~adaptrank.core.engine.Reranker`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adaptrank.core.engine import registry
from adaptrank.core.engine.base import ModelIdentity, Scorer
from adaptrank.core.modelstore import ModelStore
from adaptrank.core.settings import Settings

__all__ = ["ModelIdentity", "describe", "load_scorer", "load_version_folder"]


def describe(spec: str, store: ModelStore) -> ModelIdentity:
    """What ``spec`` names (its card for a model-store model), without loading it; a
    ``NotFoundError`` listing the known models when it names nothing."""
    return registry.resolve(spec, store).identity


def load_scorer(spec: str, store: ModelStore, settings: Settings) -> Scorer:
    """A fresh scorer for ``spec`` (not shared with any ``Reranker``)."""
    return registry.load(registry.resolve(spec, store), settings)


def load_version_folder(
    path: str | Path, *, name: str, version: str, backend: str, card: dict[str, Any], settings: Settings
) -> Scorer:
    """A scorer for a model folder that is not in the store yet (a version being written):
    ``card`` is what its ``card.json`` will hold."""
    return registry.load(registry.Resolved(name, version, backend, str(path), card=card), settings)
