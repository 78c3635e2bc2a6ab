"""The scorer protocol every backend implements.

A scorer takes (query, passage) pairs, possibly for *different* queries (the micro-batcher merges
requests), and returns one float per pair. Higher is more relevant.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Scorer(Protocol):
    #: what the result reports as ``model`` (a store name or a model path/id)
    name: str
    #: a version string that changes whenever the weights change (part of the cache key)
    version: str
    #: the backend family: cross-encoder | bi-encoder | residual | onnx
    backend: str

    def score_pairs(self, pairs: list[tuple[str, str]]) -> np.ndarray: ...
