"""Reciprocal-rank fusion (Cormack et al., 2009): one score per item from several rankings.

The one implementation behind hybrid retrieval (:func:`adaptrank.agents.retrieval.rrf`), the
agent's fusion of per-sub-question rerankings and candidate mining (BM25 + dense).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

RRF_K = 60  # the constant of Cormack et al. (2009); robust across collections


def rrf_scores(rankings: Iterable[Sequence[K]], rrf_k: int = RRF_K) -> dict[K, float]:
    """``sum(1 / (rrf_k + rank))`` over the rankings (each best first, ranks from 1) that hold an
    item; items in the order first seen."""
    scores: dict[K, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, 1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (rrf_k + rank)
    return scores
