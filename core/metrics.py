"""Ranking metrics over graded qrels: nDCG@k, MRR@k, Recall@k (the usual trec_eval definitions)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def ndcg_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int = 10) -> float:
    dcg = sum((2 ** rels.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((g for g in rels.values() if g > 0), reverse=True)[:k]
    idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
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
    run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]], k: int = 10, recall_k: int = 100
) -> dict[str, float]:
    """Mean metrics over the queries of ``run`` that have judgements."""
    qids = [q for q in run if q in qrels]
    if not qids:
        return {f"ndcg@{k}": 0.0, f"mrr@{k}": 0.0, f"recall@{recall_k}": 0.0, "queries": 0}
    n = len(qids)
    return {
        f"ndcg@{k}": sum(ndcg_at_k(run[q], qrels[q], k) for q in qids) / n,
        f"mrr@{k}": sum(mrr_at_k(run[q], qrels[q], k) for q in qids) / n,
        f"recall@{recall_k}": sum(recall_at_k(run[q], qrels[q], recall_k) for q in qids) / n,
        "queries": n,
    }
