"""Evaluation: rerank a first-stage pool on BEIR-format data and report nDCG@10, MRR@10 and
Recall@k, several models side by side with BM25 (and the zero-shot default) as baselines.

Two entry points:

* :func:`evaluate_beir` — real questions and qrels: first stage (BM25 over the corpus, or a Chroma
  collection's dense retrieval), then each model reranks the same pool. ``adaptrank eval`` and the
  ``evaluate_reranker`` tool run it.
* :func:`group_scores` — a dataset's dev split: each group's positive (and extra positives) ranked
  among its hard negatives. Fine-tuning uses it for early stopping and promotion
  (``training.finetune.data.dev_metrics``).

Scoring goes through the engine (``Reranker.scorer(spec).score_pairs``) in chunks of many queries,
so a bi-encoder embeds each passage once per chunk instead of once per query.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, PrivateAttr

from adaptrank.core.beir import BeirData, load_beir
from adaptrank.core.errors import Cancelled, InputError
from adaptrank.core.metrics import evaluate_run, mrr_at_k, ndcg_at_k
from adaptrank.core.paths import Roots
from adaptrank.core.progress import StepProgress
from adaptrank.core.settings import Settings, get_settings
from adaptrank.training.params import Depth, FirstStage, MaxQueries, Models

ScorePairs = Callable[[list[tuple[str, str]]], np.ndarray]

BM25 = "bm25"


class EvaluateParams(BaseModel):
    """An ``evaluate`` run's parameters (the ``evaluate_reranker`` tool, ``adaptrank eval``, the job)."""

    path: str = Field(
        min_length=1, max_length=4096, description="a BEIR folder (corpus.jsonl, queries.jsonl, qrels.tsv)"
    )
    models: Models = ["zero-shot"]
    first_stage: FirstStage = BM25
    depth: Depth = 30
    max_queries: MaxQueries = None
    seed: int = Field(0, description="query sample seed")


class ModelMetrics(BaseModel):
    model: str
    version: str | None = None
    metrics: dict[str, float]
    seconds: float = 0.0
    #: MRR@10 per query id (the promotion gate compares two models query by query); not in reports
    per_query: dict[str, float] = Field(default_factory=dict, exclude=True)
    #: the top 10 document ids per query id (for reports: per-query metrics and top passages); not in reports
    ranked: dict[str, list[str]] = Field(default_factory=dict, exclude=True)


class EvalReport(BaseModel):
    data: str
    first_stage: str
    depth: int
    queries: int
    documents: int
    results: list[ModelMetrics] = Field(default_factory=list)
    seconds: dict[str, float] = Field(default_factory=dict)
    _beir: BeirData | None = PrivateAttr(default=None)

    @property
    def beir(self) -> BeirData | None:
        """The data evaluated (queries, corpus, qrels), kept for reports; not serialised."""
        return self._beir

    def table(self) -> list[dict[str, Any]]:
        return [{"model": r.model, **{k: round(v, 4) for k, v in r.metrics.items()}} for r in self.results]

    def get(self, model: str) -> ModelMetrics:
        for r in self.results:
            if r.model == model:
                return r
        raise KeyError(model)


# -- dev split: ranking inside groups ---------------------------------------------------------------
def group_candidates(group: Any) -> tuple[list[str], set[int]]:
    """A group's candidate passages (positive first) and the indices that are relevant."""
    cands = [group.positive, *group.extra_positives, *group.negatives]
    uniq = list(dict.fromkeys(cands))
    relevant = {uniq.index(t) for t in [group.positive, *group.extra_positives]}
    return uniq, relevant


def group_scores(score_pairs: ScorePairs, groups: Sequence[Any], k: int = 10, chunk: int = 256) -> np.ndarray:
    """``[groups, 2]``: MRR@k and nDCG@k of each group's positives among its negatives (the
    promotion gate compares two models group by group on these)."""
    out = np.zeros((len(groups), 2))
    for lo in range(0, len(groups), chunk):
        part = groups[lo : lo + chunk]
        plans = [group_candidates(g) for g in part]
        pairs = [(g.query, t) for g, (cands, _) in zip(part, plans, strict=False) for t in cands]
        scores = np.asarray(score_pairs(pairs), dtype=np.float64)
        pos = 0
        for j, (cands, relevant) in enumerate(plans):
            s = scores[pos : pos + len(cands)]
            pos += len(cands)
            order = [str(i) for i in np.argsort(-s, kind="stable")]
            rels = {str(i): 1 for i in relevant}
            out[lo + j] = (mrr_at_k(order, rels, k), ndcg_at_k(order, rels, k))
    return out


# -- BEIR: first stage + rerank -------------------------------------------------------------------
def first_stage_bm25(data: BeirData, qids: Sequence[str], depth: int) -> dict[str, list[tuple[str, float]]]:
    from adaptrank.core.bm25 import BM25Index

    ids = list(data.corpus)
    index = BM25Index([data.doc_text(i) for i in ids], ids)
    hits = index.search_many([data.queries[q] for q in qids], depth)
    return dict(zip(qids, hits, strict=True))


def first_stage_chroma(
    data: BeirData, qids: Sequence[str], depth: int, collection: str, settings: Settings
) -> dict[str, list[tuple[str, float]]]:
    """Dense retrieval from a Chroma collection; chunks map back to corpus ids (best chunk wins)."""
    from adaptrank.core.docstore import DocStore

    store = DocStore(settings)
    out: dict[str, list[tuple[str, float]]] = {}
    for lo in range(0, len(qids), 64):
        part = list(qids[lo : lo + 64])
        results = store.query(collection, [data.queries[q] for q in part], depth * 3)
        for q, hits in zip(part, results, strict=True):
            seen: dict[str, float] = {}
            for h in hits:
                doc = str(h.metadata.get("doc_id") or h.id.split("#", 1)[0])
                if doc in data.corpus and doc not in seen:
                    seen[doc] = h.score
            out[q] = list(seen.items())[:depth]
    return out


def select_queries(data: BeirData, max_queries: int | None, seed: int) -> list[str]:
    """Queries with judgements whose relevant documents are in the corpus (a sample if asked)."""
    qids = [q for q in data.queries if any(d in data.corpus for d in data.qrels.get(q, {}))]
    if not qids:
        raise InputError("data", "no query has a judged document in the corpus (check qrels.tsv)")
    if max_queries and len(qids) > max_queries:
        rng = np.random.default_rng(seed)
        qids = sorted(rng.choice(qids, size=max_queries, replace=False).tolist(), key=qids.index)
    return qids


def rerank_run(
    score_pairs: ScorePairs,
    data: BeirData,
    pools: dict[str, list[tuple[str, float]]],
    chunk: int = 2000,
    progress: Callable[[int, int], None] | None = None,
    fuse: float = 0.0,
) -> dict[str, list[str]]:
    """Each query's pool reordered by the model (ties keep first-stage order).

    ``fuse > 0`` adds ``fuse`` times the z-normalised first-stage score to the z-normalised model
    score (interpolation with the first stage).
    """
    qids = list(pools)
    run: dict[str, list[str]] = {}
    for lo in range(0, len(qids), chunk):
        part = qids[lo : lo + chunk]
        pairs = [(data.queries[q], data.doc_text(d)) for q in part for d, _ in pools[q]]
        scores = np.asarray(score_pairs(pairs), dtype=np.float64) if pairs else np.zeros(0)
        pos = 0
        for q in part:
            n = len(pools[q])
            run[q] = _order(pools[q], scores[pos : pos + n], fuse)
            pos += n
        if progress is not None:
            progress(min(lo + chunk, len(qids)), len(qids))
    return run


def fit_fusion_weight(
    score_pairs: ScorePairs,
    data: BeirData,
    pools: dict[str, list[tuple[str, float]]],
    grid: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0),
    metric: str = "mrr@10",
) -> tuple[float, dict[float, float]]:
    """The interpolation weight with the first stage that does best on ``data`` (a dev split:
    synthetic queries whose qrels are their source documents, never the real questions)."""
    qids = [q for q in pools if q in data.qrels]
    pairs = [(data.queries[q], data.doc_text(d)) for q in qids for d, _ in pools[q]]
    scores = np.asarray(score_pairs(pairs), dtype=np.float64) if pairs else np.zeros(0)
    bounds = np.cumsum([0] + [len(pools[q]) for q in qids])
    per_query = {q: scores[bounds[i] : bounds[i + 1]] for i, q in enumerate(qids)}  # scored once, reused per weight
    results: dict[float, float] = {}
    for w in grid:
        run = {q: _order(pools[q], per_query[q], w) for q in qids}
        results[w] = evaluate_run(run, data.qrels, 10, 100)[metric]
    best = max(results, key=lambda w: (results[w], -w))
    return best, results


def _order(pool: list[tuple[str, float]], scores: np.ndarray, fuse: float) -> list[str]:
    """The pool's ids by model score (ties keep first-stage order); ``fuse > 0`` adds ``fuse`` times
    the z-normalised first-stage score to the z-normalised model score."""
    docs = [d for d, _ in pool]
    if fuse and len(docs) > 1:
        scores = _z(scores) + fuse * _z(np.asarray([x for _, x in pool], dtype=np.float64))
    return [docs[i] for i in np.argsort(-scores, kind="stable")]


def _z(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else x - x.mean()


def evaluate_beir(
    data: BeirData | str | Path,
    models: Sequence[str] = ("zero-shot",),
    *,
    first_stage: Literal["bm25"] | str = BM25,
    depth: int = 30,
    max_queries: int | None = None,
    recall_k: int | None = None,
    seed: int = 0,
    settings: Settings | None = None,
    reranker: Any = None,
    progress: StepProgress | None = None,
    cancelled: Callable[[], bool] | None = None,
    fuse: dict[str, float] | None = None,
    roots: Roots = None,
) -> EvalReport:
    """Evaluate ``models`` (engine specs: ``zero-shot``, store names, ``cross-encoder:<path>``...)
    reranking the first stage's top ``depth``; the first stage itself is the baseline row.

    ``first_stage``: ``bm25`` or ``chroma:<collection>``. ``fuse``: model -> interpolation weight
    with the first-stage score (see :func:`rerank_run`). ``roots``: as for ``load_beir``.
    ``cancelled()`` is asked at every progress report; true stops the run (``Cancelled``).
    """
    settings = settings or get_settings()
    if not 1 <= depth <= 1000:
        raise InputError("depth", f"is {depth}; it must be between 1 and 1000")
    if not models and first_stage != BM25:
        raise InputError("models", "name at least one model")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    location = str(data) if not isinstance(data, BeirData) else "in-memory"
    if not isinstance(data, BeirData):
        data = load_beir(data, roots=roots)
    qids = select_queries(data, max_queries, seed)
    timings["load"] = time.perf_counter() - t0

    def report(done: float, total: float | None, msg: str) -> None:
        if cancelled is not None and cancelled():
            raise Cancelled("evaluation was cancelled")
        if progress is not None:
            progress(done, total, msg)

    t0 = time.perf_counter()
    report(0, None, f"first stage ({first_stage}) for {len(qids)} queries")
    if first_stage == BM25:
        pools = first_stage_bm25(data, qids, depth)
    elif first_stage.startswith("chroma:"):
        pools = first_stage_chroma(data, qids, depth, first_stage.split(":", 1)[1], settings)
    else:
        raise InputError("first_stage", f"{first_stage!r} is not 'bm25' or 'chroma:<collection>'")
    timings["first_stage"] = time.perf_counter() - t0
    rk = recall_k or depth
    report_ = EvalReport(
        data=location, first_stage=first_stage, depth=depth, queries=len(qids), documents=len(data.corpus)
    )
    base_run = {q: [d for d, _ in pools[q]] for q in qids}
    report_.results.append(
        ModelMetrics(
            model=first_stage,
            metrics=evaluate_run(base_run, data.qrels, 10, rk),
            seconds=timings["first_stage"],
            ranked={q: r[:10] for q, r in base_run.items()},
        )
    )
    report_._beir = data
    if reranker is None:
        from adaptrank.core.engine import Reranker

        reranker = Reranker(settings=settings)
    for m, spec in enumerate(models):
        t0 = time.perf_counter()
        scorer = reranker.scorer(spec)

        def step(done: int, total: int, _m: int = m, _spec: str = spec) -> None:
            report(_m * len(qids) + done, len(models) * len(qids), f"{_spec}: {done}/{total} queries")

        run = rerank_run(scorer.score_pairs, data, pools, progress=step, fuse=(fuse or {}).get(spec, 0.0))
        seconds = time.perf_counter() - t0
        timings[spec] = seconds
        report_.results.append(
            ModelMetrics(
                model=spec,
                version=getattr(scorer, "version", None),
                metrics=evaluate_run(run, data.qrels, 10, rk),
                seconds=round(seconds, 2),
                per_query={q: mrr_at_k(run[q], data.qrels[q], 10) for q in run if q in data.qrels},
                ranked={q: r[:10] for q, r in run.items()},
            )
        )
    report_.seconds = {k: round(v, 2) for k, v in timings.items()}
    return report_
