"""The scorer protocol every backend implements, and the model identity scores report.

A scorer takes (query, passage) pairs, possibly for *different* queries (the micro-batcher merges
requests), and returns one float per pair. Higher is more relevant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class ModelIdentity:
    """Which model a spec names, or which model produced a score: what responses and traces report.

    ``card`` is the model-store card (None for paths, hub ids and the zero-shot default).
    """

    name: str
    version: str
    backend: str
    card: dict[str, Any] | None = field(default=None, compare=False, repr=False)


@runtime_checkable
class Scorer(Protocol):
    #: what the result reports as ``model`` (a store name or a model path/id)
    name: str
    #: a version string that changes whenever the weights change (part of the cache key)
    version: str
    #: the backend family: cross-encoder | bi-encoder | residual | onnx
    backend: str

    def score_pairs(self, pairs: list[tuple[str, str]]) -> np.ndarray: ...
