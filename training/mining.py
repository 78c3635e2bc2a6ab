"""Candidate mining: for each query, the top passages by BM25 and by dense retrieval, fused.

Hard negatives should be passages a first-stage retriever would actually put in front of the
reranker, so both retrievers contribute: BM25 (``core.bm25``) over every passage of the corpus,
and dense cosine similarity (the local MiniLM embeddings — Chroma's own index for a ``chroma``
source, an in-memory matrix for files). The lists are fused by reciprocal rank
(:func:`adaptrank.core.fusion.rrf_scores`), and the query's source document — every chunk of it — is excluded, so
a query's own passage never becomes its negative.

Dense retrieval over files means embedding the whole corpus once (minutes per ten thousand
passages on a small CPU): ``dense="auto"`` uses it for Chroma sources (already embedded) and for
file corpora up to ``dense_auto_limit`` passages, and BM25 alone beyond that. The embeddings are
cached in the job's checkpoint directory, so a resumed job does not embed again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from adaptrank.core.bm25 import BM25Index
from adaptrank.core.docstore import DocStore
from adaptrank.core.fusion import RRF_K, rrf_scores
from adaptrank.core.settings import Settings
from adaptrank.core.text import text_key
from adaptrank.core.vectors import embed_texts
from adaptrank.training.corpus import Corpus, CorpusPassage

log = logging.getLogger(__name__)

DenseMode = Literal["auto", "on", "off"]


@dataclass
class Candidate:
    id: str
    doc_id: str
    text: str
    score: float  # fused RRF score (higher is better)
    bm25_rank: int | None = None  # 1-based, None when that retriever did not return it
    dense_rank: int | None = None


def _text_key(text: str) -> bytes:
    """Exact copies up to case and whitespace share a key."""
    return text_key(" ".join(text.lower().split()))


class CandidateMiner:
    def __init__(
        self,
        corpus: Corpus,
        settings: Settings,
        *,
        depth: int = 30,
        dense: DenseMode = "auto",
        dense_auto_limit: int = 5000,
        rrf_k: int = RRF_K,
        docstore: Any = None,
        cache_dir: Path | None = None,
        progress: bool = False,
    ) -> None:
        self.corpus = corpus
        self.settings = settings
        self.depth = depth
        self.rrf_k = rrf_k
        self.by_id: dict[str, CorpusPassage] = {p.id: p for p in corpus.passages}
        self.bm25 = BM25Index([p.text for p in corpus.passages], [p.id for p in corpus.passages])
        self.max_chunks = max((len(v) for v in corpus.by_doc.values()), default=1)
        # Exact copies of a text under another id (MedQuAD repeats answers across collections)
        # are the source passage, not a negative: compare by normalized-text hash too.
        self.text_key = {p.id: _text_key(p.text) for p in corpus.passages}
        self.doc_keys = {d: {self.text_key[p.id] for p in ps} for d, ps in corpus.by_doc.items()}
        if dense == "auto":
            use_dense = corpus.kind == "chroma" or len(corpus.passages) <= dense_auto_limit
        else:
            use_dense = dense == "on"
        self.dense_mode = "off"
        self._matrix: np.ndarray | None = None
        self._docstore = docstore
        if use_dense:
            if corpus.kind == "chroma":
                if self._docstore is None:
                    self._docstore = DocStore(settings)
                self.dense_mode = "chroma"
            else:
                self._matrix = self._embed_corpus(cache_dir, progress)
                self.dense_mode = "memory"

    def describe(self) -> dict[str, Any]:
        return {
            "retrievers": ["bm25"] + ([f"dense:{self.dense_mode}"] if self.dense_mode != "off" else []),
            "depth": self.depth,
            "fusion": f"rrf(k={self.rrf_k})",
        }

    # -- dense ---------------------------------------------------------------------------------
    def _model(self) -> Any:
        from adaptrank.core.embeddings import shared_model

        return shared_model(self.settings.embedding_model, self.settings.device)

    def _embed_corpus(self, cache_dir: Path | None, progress: bool) -> np.ndarray:
        """Every passage's vector: from the job's checkpoint, else the process-wide cache, else
        embedded now. Either way the process-wide cache ends up holding them, so fine-tuning in the
        same process (``adapt``) finds its frozen passage vectors already computed."""
        from adaptrank.core.embeddings import model_fingerprint, passage_vectors

        texts = [p.text for p in self.corpus.passages]
        ids = "\n".join(p.id for p in self.corpus.passages)
        key = hashlib.sha1((ids + model_fingerprint(self.settings.embedding_model)).encode()).hexdigest()[:16]
        cache = Path(cache_dir) / f"embeddings-{key}.npy" if cache_dir else None
        shared = passage_vectors(self.settings.embedding_model)
        if cache is not None and cache.is_file():
            matrix = np.load(cache)
        else:
            from adaptrank.core.embeddings import embed_passages

            matrix = embed_passages(texts, self.settings.embedding_model, self.settings.device)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(".tmp.npy")
                np.save(tmp, matrix)
                tmp.replace(cache)
        for t, v in zip(texts, matrix, strict=True):
            shared.setdefault(t, v)
        return matrix

    def _dense(self, queries: Sequence[str], k: int) -> list[list[str]]:
        if self.dense_mode == "chroma":
            hits = self._docstore.query(self.corpus.location, list(queries), k)
            return [[h.id for h in row] for row in hits]
        if self.dense_mode == "memory":
            q = embed_texts(self._model(), queries)
            sims = q.astype(np.float32) @ self._matrix.T
            k = min(k, sims.shape[1])
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            out = []
            for row, idx in zip(sims, top, strict=True):
                order = idx[np.argsort(-row[idx])]
                out.append([self.corpus.passages[i].id for i in order])
            return out
        return [[] for _ in queries]

    # -- mining --------------------------------------------------------------------------------
    def mine(self, queries: Sequence[str], source_doc_ids: Sequence[str]) -> list[list[Candidate]]:
        """Up to ``depth`` fused candidates per query, never from the query's source document."""
        return self.mine_with_source_ranks(queries, source_doc_ids)[0]

    def mine_with_source_ranks(
        self, queries: Sequence[str], source_doc_ids: Sequence[str], source_depth: int = 0
    ) -> tuple[list[list[Candidate]], list[int | None]]:
        """:meth:`mine`, plus where each query's own document ranks: the best 1-based rank of any of
        its passages (or an exact copy of one) in the BM25 or the dense list, ``None`` when neither
        retriever returned it within ``max(depth, source_depth)``. The round-trip filter of
        generation (Promptagator) keeps only queries that find their own document."""
        if not queries:
            return [], []
        k = max(self.depth, source_depth) + self.max_chunks  # room for the excluded document's chunks
        bm25 = [[pid for pid, _ in row] for row in self.bm25.search_many(list(queries), k)]
        dense = self._dense(queries, k)
        out = []
        source_ranks: list[int | None] = []
        for b_ids, d_ids, source in zip(bm25, dense, source_doc_ids, strict=True):
            own = self.doc_keys.get(source, set())
            source_rank: int | None = None
            kept: dict[str, list[str]] = {}
            for name, ids in (("bm25", b_ids), ("dense", d_ids)):
                kept[name] = []
                seen_keys: dict[str, str] = {}
                for position, pid in enumerate(ids, 1):
                    p = self.by_id.get(pid)
                    if p is None:
                        continue
                    if p.doc_id == source or self.text_key[pid] in own:
                        source_rank = position if source_rank is None else min(source_rank, position)
                        continue
                    if seen_keys.setdefault(self.text_key[pid], pid) != pid or pid in kept[name]:
                        continue  # the same text twice: keep one
                    kept[name].append(pid)
            rank_of = {name: {pid: r for r, pid in enumerate(pids, 1)} for name, pids in kept.items()}
            scores = rrf_scores(kept.values(), self.rrf_k)
            ordered = sorted(((score, pid) for pid, score in scores.items()), key=lambda x: (-x[0], x[1]))
            fused, keys = [], set()
            for score, pid in ordered:  # one copy per text across both retrievers
                if self.text_key[pid] not in keys and len(fused) < self.depth:
                    keys.add(self.text_key[pid])
                    fused.append((score, pid))
            source_ranks.append(source_rank)
            out.append(
                [
                    Candidate(
                        id=pid,
                        doc_id=self.by_id[pid].doc_id,
                        text=self.by_id[pid].text,
                        score=score,
                        bm25_rank=rank_of["bm25"].get(pid),
                        dense_rank=rank_of["dense"].get(pid),
                    )
                    for score, pid in fused
                ]
            )
        return out, source_ranks
