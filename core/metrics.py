"""Ranking metrics over graded qrels: nDCG@k, MRR@k, Recall@k.

nDCG uses the *exponential* gain ``2**grade - 1`` (Burges et al., 2005)
and ``log2(rank + 1)`` discounts; the ideal ranking is the judged relevant
documents sorted by grade, cut at ``k``. trec_eval's ``ndcg_cut`` uses the grade itself as the gain
(``gain="linear"``). The two agree on binary qrels (grades 0/1) and differ on graded ones.
MRR@k and Recall@k count any grade above 0 as relevant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

Gain = Literal["exponential", "linear"]


def _gain(grade: int, gain: Gain) -> float:
    if gain == "exponential":
        return 2**grade - 1
    return grade if grade > 0 else 0


def ndcg_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int = 10, gain: Gain = "exponential") -> float:
    """nDCG@k; ``gain="linear"`` for trec_eval's ``ndcg_cut`` (see the module docstring)."""
    if gain not in ("exponential", "linear"):
        raise ValueError(f"gain must be 'exponential' or 'linear', got {gain!r}")
    dcg = sum(_gain(rels.get(d, 0), gain) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((g for g in rels.values() if g > 0), reverse=True)[:k]
    idcg = sum(_gain(g, gain) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def mrr_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int = 10) -> float:
    for i, d in enumerate(ranked[:k]):
        if rels.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def recall_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int = 10) -> float:
    relevant = {d for d, g in rels.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def evaluate_run(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    k: int = 10,
    recall_k: int = 100,
    gain: Gain = "exponential",
) -> dict[str, float]:
    """Mean metrics over the queries of ``run`` that have judgements (``gain``: nDCG's gain)."""
    qids = [q for q in run if q in qrels]
    if not qids:
        return {f"ndcg@{k}": 0.0, f"mrr@{k}": 0.0, f"recall@{recall_k}": 0.0, "queries": 0}
    n = len(qids)
    return {
        f"ndcg@{k}": sum(ndcg_at_k(run[q], qrels[q], k, gain) for q in qids) / n,
        f"mrr@{k}": sum(mrr_at_k(run[q], qrels[q], k) for q in qids) / n,
        f"recall@{recall_k}": sum(recall_at_k(run[q], qrels[q], recall_k) for q in qids) / n,
        "queries": n,
    }
