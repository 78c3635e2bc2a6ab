"""First-stage retrieval for the agent: dense from Chroma, optionally hybrid with BM25 (RRF).

The agent talks to a :class:`Retriever` — "k candidates for each of these queries" — so the same
loop runs over a DocStore collection here and over any LlamaIndex retriever in
``adaptrank.integrations.llamaindex``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from adaptrank.core.docstore import DocStore, Hit
from adaptrank.core.fusion import RRF_K, rrf_scores
from adaptrank.core.modelspec import ZERO_SHOT


class Retriever(Protocol):
    def retrieve(self, queries: list[str], k: int) -> list[list[Hit]]:
        """The ``k`` best candidates for each query, best first."""
        ...


def rrf(rankings: Sequence[Sequence[Hit]], k: int, rrf_k: int = RRF_K) -> list[Hit]:
    """Reciprocal-rank fusion of several rankings of the same query: sum of ``1/(rrf_k + rank)``.

    The fused hits carry the fused score; the first ranking that saw a passage supplies its text.
    """
    fused: dict[str, Hit] = {}
    for ranking in rankings:
        for hit in ranking:
            if hit.id not in fused or (fused[hit.id].embedding is None and hit.embedding is not None):
                fused[hit.id] = hit
    scores = rrf_scores(([hit.id for hit in ranking] for ranking in rankings), rrf_k)
    order = sorted(scores, key=lambda i: -scores[i])[:k]
    return [Hit(i, fused[i].text, fused[i].metadata, scores[i], fused[i].embedding) for i in order]


class _BM25Cache:
    """One BM25 index per collection, rebuilt when the collection's size changes.

    An in-place update that keeps the size (a re-ingested, edited document with the same number of
    chunks) is not seen: call :meth:`clear` after one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._indexes: dict[tuple[str, str], tuple[int, Any, dict[str, tuple[str, dict]]]] = {}

    def clear(self) -> None:
        with self._lock:
            self._indexes.clear()

    def get(self, store: DocStore, collection: str) -> tuple[Any, dict[str, tuple[str, dict]]]:
        from adaptrank.core.bm25 import BM25Index

        key = (store.location, collection)
        count = store.count(collection)
        with self._lock:
            cached = self._indexes.get(key)
            if cached is None or cached[0] != count:
                docs = {i: (t, m) for i, t, m in store.iter_documents(collection, batch_size=5000)}
                ids = list(docs)
                index = BM25Index([docs[i][0] for i in ids], ids) if ids else None
                cached = self._indexes[key] = (count, index, docs)
        return cached[1], cached[2]


BM25_CACHE = _BM25Cache()


class ChromaRetriever:
    """Dense retrieval from a DocStore collection; ``hybrid=True`` fuses it with BM25 by RRF.

    In hybrid mode each query draws ``k`` dense and ``k`` BM25 candidates and keeps the best ``k``
    of their fusion, so the pool budget stays ``k`` per query.

    ``query_encoder`` (texts -> unit vectors): embed the queries with another query tower than the
    store's — an adapted reranker's, whose passage tower made the stored vectors
    (:meth:`for_reranker` checks that by fingerprint). Hits carry their stored vectors
    (``Hit.embedding``) when the collection records which model made them
    (``embedding_fingerprint``), so a bi-encoder-family reranker scores the pool without
    embedding a passage again.
    """

    def __init__(
        self,
        store: DocStore,
        collection: str,
        hybrid: bool = False,
        where: dict[str, Any] | None = None,
        query_encoder: Callable[[list[str]], Any] | None = None,
    ) -> None:
        self.store = store
        self.collection = collection
        self.hybrid = hybrid
        self.where = where
        self.query_encoder = query_encoder
        self.tower = "reranker"  # whose tower query_encoder is: the reranker model's, or "base" (zero-shot)
        # NotFoundError naming the known collections, up front
        self.embedding_fingerprint = store.embedding_fingerprint(collection)

    @classmethod
    def for_reranker(
        cls,
        store: DocStore,
        collection: str,
        reranker: Any,
        model: str | None = None,
        first_stage: Literal["base", "model"] = "base",
        **kwargs: Any,
    ) -> ChromaRetriever:
        """A retriever whose hits carry the stored passage vectors the model's passage tower made (same
        fingerprint), so the rerank stage scores the pool without re-embedding it.

        ``first_stage="model"`` also embeds the *queries* with the model's query tower. For an adapted
        query tower that is worse over a whole collection: on 500 GHR questions over medquad-dev's
        19,745 chunks, Recall@20 fell from 0.956 (base tower) to 0.794 (adapted), because the tower was
        trained to order a pool of hard candidates, not to search everything. So the default keeps the
        base tower for the first stage and lets the adapted model rerank the pool (docs/agent.md)."""
        retriever = cls(store, collection, **kwargs)
        fingerprint = reranker.passage_fingerprint(model)
        if fingerprint is None or fingerprint != retriever.embedding_fingerprint:
            return retriever  # the store embeds the queries
        if first_stage == "model":
            retriever.query_encoder = lambda queries: reranker.embed_queries(queries, model)
        elif reranker.passage_fingerprint(ZERO_SHOT) == fingerprint:
            # the base tower through the engine: its query vectors are cached, so a zero-shot rerank
            # of the pool reuses them instead of embedding the question twice
            retriever.query_encoder = lambda queries: reranker.embed_queries(queries, ZERO_SHOT)
            retriever.tower = "base"
        return retriever

    @property
    def query_tower(self) -> str:
        """Which tower embedded the queries: ``reranker`` (the model's own), ``base`` (the zero-shot
        model's, through the engine) or ``store`` (the collection's embedding function)."""
        return "store" if self.query_encoder is None else self.tower

    def retrieve(self, queries: list[str], k: int) -> list[list[Hit]]:
        vectors = self.query_encoder(list(queries)) if self.query_encoder is not None else None
        with_vectors = self.embedding_fingerprint is not None
        dense = self.store.query(
            self.collection, queries, k, where=self.where, query_embeddings=vectors, include_embeddings=with_vectors
        )
        if not self.hybrid:
            return dense
        index, docs = BM25_CACHE.get(self.store, self.collection)
        if index is None:
            return dense
        sparse = index.search_many(queries, k)
        out = []
        for d, s in zip(dense, sparse, strict=True):
            bm25_hits = [Hit(i, docs[i][0], dict(docs[i][1]), score) for i, score in s]
            if self.where:  # BM25 has no filter: apply equality filters on metadata by hand
                bm25_hits = [h for h in bm25_hits if _matches(h.metadata, self.where)]
            out.append(rrf([d, bm25_hits], k))
        if with_vectors:  # BM25-only hits: their stored vectors in one call
            missing = [h.id for row in out for h in row if h.embedding is None]
            stored = self.store.embeddings(self.collection, missing)
            for row in out:
                for h in row:
                    if h.embedding is None:
                        h.embedding = stored.get(h.id)
        return out


def _matches(meta: dict[str, Any], where: dict[str, Any]) -> bool:
    for key, cond in where.items():
        if key.startswith("$"):
            return True  # operators: leave to Chroma (dense side); keep the BM25 hit
        if isinstance(cond, dict):
            if "$eq" in cond and meta.get(key) != cond["$eq"]:
                return False
            if "$in" in cond and meta.get(key) not in cond["$in"]:
                return False
        elif meta.get(key) != cond:
            return False
    return True
