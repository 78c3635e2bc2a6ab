"""``Reranker``: the one scoring entry point the MCP tool, the HTTP route, the LlamaIndex
postprocessor and the agent all call.

It validates input (errors name the field and the limit), resolves the model (store names follow
the *active* version, so a promotion is picked up on the next request without dropping in-flight
ones), serves cached scores, merges concurrent requests through the micro-batcher, and runs the
forward pass off the event loop for async callers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from adaptrank.core.engine import registry
from adaptrank.core.engine.base import Scorer
from adaptrank.core.engine.batcher import MicroBatcher
from adaptrank.core.engine.cache import ScoreCache, VectorCache
from adaptrank.core.errors import InputError
from adaptrank.core.modelstore import ModelStore
from adaptrank.core.results import Document, RerankResponse, RerankResult
from adaptrank.core.settings import Settings, get_settings

DocumentInput = str | Document | dict[str, Any]


class ModelInfo(BaseModel):
    name: str
    version: str
    backend: str
    active: bool
    loaded: bool = False
    card: dict[str, Any] | None = None


@dataclass
class _Loaded:
    resolved: registry.Resolved
    scorer: Scorer
    batcher: MicroBatcher | None


class Reranker:
    """Score and rerank passages. ``Reranker()`` uses the settings' default model.

    >>> rr = Reranker()                      # zero-shot default, offline
    >>> rr.rerank("what causes gout?", ["Gout is caused by uric acid...", "Paris is..."], top_n=1)
    """

    def __init__(
        self, model: str | None = None, *, settings: Settings | None = None, store: ModelStore | None = None
    ) -> None:
        self.settings = settings or get_settings()
        self.store = store or ModelStore(self.settings.models_dir)
        self.default_model = model or self.settings.default_model
        self.cache = ScoreCache(self.settings.cache_size)
        self._query_vectors: dict[str, VectorCache] = {}  # per model@version: retrieval and rerank share them
        self._loaded: dict[str, _Loaded] = {}
        self._lock = threading.RLock()

    # -- models --------------------------------------------------------------------------------
    def scorer(self, model: str | None = None) -> Scorer:
        return self._get(model or self.default_model).scorer

    def _get(self, spec: str) -> _Loaded:
        resolved = registry.resolve(spec, self.store)
        current = self._loaded.get(spec)
        if current is not None and current.resolved.version == resolved.version:
            return current
        with self._lock:  # one loader at a time; in-flight requests keep the old scorer
            current = self._loaded.get(spec)
            if current is not None and current.resolved.version == resolved.version:
                return current
            scorer = registry.load(resolved, self.settings)
            batcher = (
                MicroBatcher(scorer.score_pairs, self.settings.microbatch_wait_ms, max_pairs=1024)
                if self.settings.microbatch
                else None
            )
            self._loaded[spec] = new = _Loaded(resolved, scorer, batcher)
            if current is not None and current.batcher is not None:
                current.batcher.close()  # drains what it already queued
            return new

    def models(self) -> list[ModelInfo]:
        loaded = {(x.resolved.name, x.resolved.version) for x in self._loaded.values()}
        out = [
            ModelInfo(
                name=registry.ZERO_SHOT,
                version="all-minilm-l6-v2",
                backend="bi-encoder",
                active=True,
                loaded=(registry.ZERO_SHOT, "all-minilm-l6-v2") in loaded,
            )
        ]
        for ref in self.store.list():
            out.append(
                ModelInfo(
                    name=ref.name,
                    version=ref.version,
                    backend=ref.card.backend,
                    active=ref.active,
                    loaded=(ref.name, ref.version) in loaded,
                    card=ref.card.model_dump(mode="json"),
                )
            )
        return out

    # -- validation ----------------------------------------------------------------------------
    def validate(
        self, query: str, documents: Sequence[DocumentInput], top_n: int | None = None
    ) -> list[Document]:
        s = self.settings
        if not isinstance(query, str) or not query.strip():
            raise InputError("query", "must be a non-empty string")
        if len(query) > s.max_query_chars:
            raise InputError("query", f"has {len(query)} characters; the limit is {s.max_query_chars}")
        if not documents:
            raise InputError("documents", "must contain at least one document")
        if len(documents) > s.max_documents:
            raise InputError("documents", f"has {len(documents)} items; the limit is {s.max_documents}")
        docs: list[Document] = []
        for i, d in enumerate(documents):
            try:
                doc = d if isinstance(d, Document) else Document(text=d) if isinstance(d, str) else Document.model_validate(d)
            except ValidationError as exc:
                raise InputError(f"documents[{i}]", f"must be a string or {{id, text, metadata}}: {exc.errors()[0]['msg']}") from None
            if len(doc.text) > s.max_document_chars:
                raise InputError(
                    f"documents[{i}].text", f"has {len(doc.text)} characters; the limit is {s.max_document_chars}"
                )
            docs.append(doc)
        if top_n is not None and not (1 <= top_n <= s.max_documents):
            raise InputError("top_n", f"is {top_n}; it must be between 1 and {s.max_documents}")
        return docs

    # -- scoring -------------------------------------------------------------------------------
    def _plan(self, spec: str, query: str, texts: list[str]):
        loaded = self._get(spec)
        key = f"{loaded.resolved.name}@{loaded.resolved.version}"
        pairs = [(query, t) for t in texts]
        cached = self.cache.get_many(key, pairs)
        missing = [i for i, v in enumerate(cached) if v is None]
        return loaded, key, pairs, cached, missing

    def _finish(self, key, pairs, cached, missing, fresh) -> np.ndarray:
        if missing:
            self.cache.put_many(key, [pairs[i] for i in missing], list(fresh))
            for j, i in enumerate(missing):
                cached[i] = float(fresh[j])
        return np.asarray(cached, dtype=np.float64)

    def score_texts(self, query: str, texts: list[str], model: str | None = None) -> tuple[np.ndarray, registry.Resolved]:
        """Scores for ``texts`` against ``query`` (no validation; library callers)."""
        loaded, key, pairs, cached, missing = self._plan(model or self.default_model, query, texts)
        fresh: np.ndarray = np.zeros(0)
        if missing:
            todo = [pairs[i] for i in missing]
            fresh = loaded.batcher.submit(todo).result() if loaded.batcher else loaded.scorer.score_pairs(todo)
        return self._finish(key, pairs, cached, missing, fresh), loaded.resolved

    async def ascore_texts(self, query: str, texts: list[str], model: str | None = None) -> tuple[np.ndarray, registry.Resolved]:
        """Async variant: loading and the forward pass run in threads, never on the event loop."""
        loaded, key, pairs, cached, missing = await asyncio.to_thread(self._plan, model or self.default_model, query, texts)
        fresh: np.ndarray = np.zeros(0)
        if missing:
            todo = [pairs[i] for i in missing]
            if loaded.batcher:
                fresh = await asyncio.wrap_future(loaded.batcher.submit(todo))
            else:
                fresh = await asyncio.to_thread(loaded.scorer.score_pairs, todo)
        return self._finish(key, pairs, cached, missing, fresh), loaded.resolved

    def score(self, query: str, documents: Sequence[DocumentInput], model: str | None = None) -> np.ndarray:
        docs = self.validate(query, documents)
        return self.score_texts(query, [d.text for d in docs], model)[0]

    def rerank(
        self,
        query: str,
        documents: Sequence[DocumentInput],
        top_n: int | None = None,
        model: str | None = None,
        return_documents: bool = False,
    ) -> RerankResponse:
        docs = self.validate(query, documents, top_n)
        scores, resolved = self.score_texts(query, [d.text for d in docs], model)
        return _response(resolved, docs, scores, top_n, return_documents)

    async def arerank(
        self,
        query: str,
        documents: Sequence[DocumentInput],
        top_n: int | None = None,
        model: str | None = None,
        return_documents: bool = False,
    ) -> RerankResponse:
        docs = self.validate(query, documents, top_n)
        scores, resolved = await self.ascore_texts(query, [d.text for d in docs], model)
        return _response(resolved, docs, scores, top_n, return_documents)

    # -- the bi-encoder family: vectors instead of texts ----------------------------------------------
    def dense(self, model: str | None = None) -> tuple[Any, registry.Resolved] | None:
        """``(scorer, resolved)`` when the model scores by a dot product of a query tower and a
        passage tower (zero-shot, ``bi-encoder:``, a query-encoder residual); None otherwise."""
        loaded = self._get(model or self.default_model)
        return (loaded.scorer, loaded.resolved) if getattr(loaded.scorer, "dense", False) else None

    def passage_fingerprint(self, model: str | None = None) -> str | None:
        """The fingerprint of the model's passage tower (None: not a dense model). Vectors stored by
        a collection with the same fingerprint are exactly what this model would compute."""
        dense = self.dense(model)
        return dense[0].passage_fingerprint() if dense else None

    def embed_queries(self, queries: list[str], model: str | None = None) -> np.ndarray:
        """The model's query vectors (its adapted query tower where it has one), cached per version,
        so a query embedded for retrieval is not embedded again for reranking."""
        dense = self.dense(model)
        if dense is None:
            raise InputError("model", f"{model or self.default_model!r} is not a bi-encoder-family model")
        scorer, resolved = dense
        key = f"{resolved.name}@{resolved.version}"
        cache = self._query_vectors.get(key)
        if cache is None:
            cache = self._query_vectors.setdefault(key, VectorCache(4096))
        return cache.embed(list(queries), scorer.embed_queries)

    def score_embedded(
        self, queries: list[str], passage_vectors: Any, fingerprint: str | None, model: str | None = None
    ) -> tuple[np.ndarray, registry.Resolved] | None:
        """``[queries, passages]`` scores from stored passage vectors — no passage is embedded again.
        None when the model is not dense or ``fingerprint`` (of the model that made the vectors) is
        not its passage tower's: then the caller scores texts."""
        dense = self.dense(model)
        if dense is None or fingerprint is None or dense[0].passage_fingerprint() != fingerprint:
            return None
        scorer, resolved = dense
        return scorer.score_embedded(self.embed_queries(queries, model), passage_vectors), resolved

    async def ascore_embedded(
        self, queries: list[str], passage_vectors: Any, fingerprint: str | None, model: str | None = None
    ) -> tuple[np.ndarray, registry.Resolved] | None:
        return await asyncio.to_thread(self.score_embedded, queries, passage_vectors, fingerprint, model)

    def close(self) -> None:
        for loaded in self._loaded.values():
            if loaded.batcher is not None:
                loaded.batcher.close()


def _response(resolved, docs: list[Document], scores: np.ndarray, top_n, return_documents) -> RerankResponse:
    order = np.argsort(-scores, kind="stable")[: top_n or len(docs)]
    results = [
        RerankResult(
            index=int(i),
            id=docs[i].id,
            score=float(scores[i]),
            document=docs[i] if return_documents else None,
        )
        for i in order
    ]
    return RerankResponse(model=resolved.name, version=resolved.version, results=results)
