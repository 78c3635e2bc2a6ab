# Over 400 lines: one class, the engine's single entry point (model cache, scoring, dense retrieval helpers); its parts live in engine/*.
"""``Reranker``: the one scoring entry point the MCP tool, the HTTP route, the LlamaIndex
postprocessor and the agent all call.

It validates input (errors name the field and the limit), resolves the model (store names follow
the *active* version, so a promotion is picked up on the next request without dropping in-flight
ones), serves cached scores, merges concurrent requests through the micro-batcher, and runs the
forward pass off the event loop for async callers.

Loaded models live in an LRU of ``settings.max_loaded_models`` entries keyed by what a spec
*means* (``Resolved.key``), so ``p``, ``p/`` and ``p/.`` share one copy and a stream of different
specs cannot grow memory without bound; the default model is pinned. A server passes ``access``
(:class:`~adaptrank.core.modelspec.ModelAccess`) to limit what a request may name; library and
CLI callers leave it out.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from adaptrank.core.engine import registry
from adaptrank.core.engine.base import ModelIdentity, Scorer
from adaptrank.core.engine.batcher import BatcherClosed, MicroBatcher
from adaptrank.core.engine.cache import ScoreCache, VectorCache
from adaptrank.core.engine.memory import release_when_freed
from adaptrank.core.errors import AdaptRankError, InputError, NotFoundError
from adaptrank.core.modelspec import ModelAccess
from adaptrank.core.modelstore import ModelStore
from adaptrank.core.results import Document, RerankResponse, RerankResult
from adaptrank.core.settings import Settings, get_settings
from adaptrank.core.text import check_text, check_value

log = logging.getLogger(__name__)

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
    pinned: bool = False  # the default model: never evicted


class EngineEvents:
    """What the engine reports as it works. These are no-ops; a server hands in an object with the
    same two methods that counts them (``adaptrank.server.metrics.Metrics``)."""

    def scored(self, model: str, pairs: int, cached: int) -> None:
        """A request's ``pairs`` were scored with ``model``, ``cached`` of them from the score cache."""

    def forward_pass(self, model: str, pairs: int, requests: int) -> None:
        """One forward pass of ``pairs`` pairs, merged from ``requests`` requests."""


class Reranker:
    """Score and rerank passages. ``Reranker()`` uses the settings' default model.

    >>> rr = Reranker()                      # zero-shot default, offline
    >>> rr.rerank("what causes gout?", ["Gout is caused by uric acid...", "Paris is..."], top_n=1)
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        settings: Settings | None = None,
        store: ModelStore | None = None,
        access: ModelAccess | None = None,
        events: EngineEvents | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.events = events or EngineEvents()
        self.store = store or ModelStore(self.settings.models_dir)
        self.default_model = model or self.settings.default_model
        self.access = access
        self.cache = ScoreCache(self.settings.cache_size)
        self._query_vectors: dict[str, VectorCache] = {}  # per model@version: retrieval and rerank share them
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()  # Resolved.key -> model, LRU order
        self._lock = threading.RLock()  # one loader at a time; in-flight requests keep their scorer

    # -- models --------------------------------------------------------------------------------
    def scorer(self, model: str | None = None) -> Scorer:
        return self._get(self._spec(model)).scorer

    def _spec(self, model: str | None) -> str:
        """The spec to score with; a model named by a request passes ``access`` first."""
        if model is None or model == self.default_model:
            return self.default_model
        if self.access is not None:
            self.access.check(model)
        return model

    def _get(self, spec: str) -> _Loaded:
        resolved = registry.resolve(spec, self.store)
        pinned = spec == self.default_model
        current = self._hit(resolved, pinned)  # no lock: requests go on while another model loads
        if current is not None:
            return current
        with self._lock:
            current = self._hit(resolved, pinned)
            if current is not None:
                return current
            scorer = self._load(spec, resolved)
            batcher = (
                MicroBatcher(
                    scorer.score_pairs,
                    self.settings.microbatch_wait_ms,
                    max_pairs=1024,
                    pass_tokens=self.settings.microbatch_tokens,
                    on_pass=functools.partial(self.events.forward_pass, resolved.name),
                )
                if self.settings.microbatch
                else None
            )
            new = _Loaded(resolved, scorer, batcher, pinned)
            self._loaded[resolved.key] = new
            self._loaded.move_to_end(resolved.key)
            for key, old in list(self._loaded.items()):
                # the same path with other weights, or the version a promotion replaced
                same = key == resolved.key
                promoted = resolved.store_name is not None and "@" not in spec
                older = promoted and old.resolved.store_name == resolved.store_name and (pinned or not old.pinned)
                if old is not new and (same or older):
                    self._drop(key, old)
                elif old is not new and pinned:
                    old.pinned = False  # one default at a time
            self._evict(keep=new)
            return new

    def _hit(self, resolved: registry.Resolved, pinned: bool) -> _Loaded | None:
        """The loaded model for ``resolved`` if it is the same version (marked recently used)."""
        current = self._loaded.get(resolved.key)
        if current is None or current.resolved.version != resolved.version:
            return None
        try:
            self._loaded.move_to_end(resolved.key)
        except KeyError:  # dropped meanwhile; this request still uses it
            pass
        current.pinned = current.pinned or pinned
        return current

    def _load(self, spec: str, resolved: registry.Resolved) -> Scorer:
        """Load a scorer. A failure is the caller's bad model, not a server fault: with ``access``
        (a server) it is the same error as an unknown model, so it reveals nothing about the disk."""
        try:
            return registry.load(resolved, self.settings)
        except AdaptRankError:
            raise
        except Exception as exc:
            if self.access is not None and spec != self.default_model:
                log.warning("model %r failed to load: %s: %s", spec, type(exc).__name__, exc)
                raise self.access.refused(spec, "model") from None
            raise NotFoundError("model", f"could not load {spec!r}: {type(exc).__name__}: {exc}") from exc

    def _drop(self, key: str, old: _Loaded) -> None:
        if self._loaded.get(key) is old:
            del self._loaded[key]
        self._query_vectors.pop(f"{old.resolved.key}@{old.resolved.version}", None)
        if old.batcher is not None:
            old.batcher.close()  # drains what it already queued
        release_when_freed(old.scorer)  # its memory goes back once the last request using it ends

    def _evict(self, keep: _Loaded) -> None:
        """Least recently used first, never the pinned default nor the model just loaded."""
        limit = max(self.settings.max_loaded_models, 1)
        for key, old in list(self._loaded.items()):
            if len(self._loaded) <= limit:
                return
            if old is not keep and not old.pinned:
                self._drop(key, old)

    def loaded(self) -> list[ModelIdentity]:
        """The models loaded now, least recently used first."""
        return [x.resolved.identity for x in list(self._loaded.values())]

    def describe(self, model: str | None = None) -> ModelIdentity:
        """What ``model`` (default: this reranker's default model) names, without loading it."""
        return registry.resolve(model or self.default_model, self.store).identity

    def models(self) -> list[ModelInfo]:
        loaded = {(x.resolved.name, x.resolved.version) for x in list(self._loaded.values())}
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
    def validate(self, query: str, documents: Sequence[DocumentInput], top_n: int | None = None) -> list[Document]:
        s = self.settings
        if not isinstance(query, str) or not query.strip():
            raise InputError("query", "must be a non-empty string")
        if len(query) > s.max_query_chars:
            raise InputError("query", f"has {len(query)} characters; the limit is {s.max_query_chars}")
        check_text(query, "query")
        if not documents:
            raise InputError("documents", "must contain at least one document")
        if len(documents) > s.max_documents:
            raise InputError("documents", f"has {len(documents)} items; the limit is {s.max_documents}")
        docs: list[Document] = []
        total = 0
        for i, d in enumerate(documents):
            try:
                doc = (
                    d
                    if isinstance(d, Document)
                    else Document(text=d)
                    if isinstance(d, str)
                    else Document.model_validate(d)
                )
            except ValidationError as exc:
                raise InputError(
                    f"documents[{i}]", f"must be a string or {{id, text, metadata}}: {exc.errors()[0]['msg']}"
                ) from None
            if len(doc.text) > s.max_document_chars:
                raise InputError(
                    f"documents[{i}].text", f"has {len(doc.text)} characters; the limit is {s.max_document_chars}"
                )
            total += len(doc.text)
            if total > s.max_total_chars:
                raise InputError(
                    "documents",
                    f"have more than {s.max_total_chars} characters together (at documents[{i}]); "
                    f"the limit is {s.max_total_chars}",
                )
            check_text(doc.text, f"documents[{i}].text")
            if doc.id is not None:
                check_text(doc.id, f"documents[{i}].id")
            if doc.metadata:
                check_value(doc.metadata, f"documents[{i}].metadata")
            docs.append(doc)
        if top_n is not None and not (1 <= top_n <= s.max_documents):
            raise InputError("top_n", f"is {top_n}; it must be between 1 and {s.max_documents}")
        return docs

    # -- scoring -------------------------------------------------------------------------------
    def _plan(self, model: str | None, query: str, texts: list[str]):
        loaded = self._get(self._spec(model))
        key = f"{loaded.resolved.key}@{loaded.resolved.version}"
        pairs = [(query, t) for t in texts]
        cached = self.cache.get_many(key, pairs)
        missing = [i for i, v in enumerate(cached) if v is None]
        return loaded, key, pairs, cached, missing

    def _finish(self, loaded: _Loaded, key, pairs, cached, missing, fresh) -> np.ndarray:
        self.events.scored(loaded.resolved.name, len(pairs), len(pairs) - len(missing))
        if missing:
            self.cache.put_many(key, [pairs[i] for i in missing], list(fresh))
            for j, i in enumerate(missing):
                cached[i] = float(fresh[j])
        return np.asarray(cached, dtype=np.float64)

    def score_texts(self, query: str, texts: list[str], model: str | None = None) -> tuple[np.ndarray, ModelIdentity]:
        """Scores for ``texts`` against ``query`` (no validation; library callers)."""
        loaded, key, pairs, cached, missing = self._plan(model, query, texts)
        fresh: np.ndarray = np.zeros(0)
        if missing:
            todo = [pairs[i] for i in missing]
            future = _submit(loaded, todo)
            fresh = future.result() if future is not None else self._direct(loaded, todo)
        return self._finish(loaded, key, pairs, cached, missing, fresh), loaded.resolved.identity

    async def ascore_texts(
        self, query: str, texts: list[str], model: str | None = None
    ) -> tuple[np.ndarray, ModelIdentity]:
        """Async variant: loading and the forward pass run in threads, never on the event loop."""
        loaded, key, pairs, cached, missing = await asyncio.to_thread(self._plan, model, query, texts)
        fresh: np.ndarray = np.zeros(0)
        if missing:
            todo = [pairs[i] for i in missing]
            future = _submit(loaded, todo)
            if future is not None:
                fresh = await asyncio.wrap_future(future)
            else:
                fresh = await asyncio.to_thread(self._direct, loaded, todo)
        return self._finish(loaded, key, pairs, cached, missing, fresh), loaded.resolved.identity

    def _direct(self, loaded: _Loaded, pairs: list[tuple[str, str]]) -> np.ndarray:
        """One forward pass without the micro-batcher."""
        scores = loaded.scorer.score_pairs(pairs)
        self.events.forward_pass(loaded.resolved.name, len(pairs), 1)
        return scores

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
    def dense(self, model: str | None = None) -> tuple[Any, ModelIdentity] | None:
        """``(scorer, model identity)`` when the model scores by a dot product of a query tower and a
        passage tower (zero-shot, ``bi-encoder:``, a query-encoder residual); None otherwise."""
        loaded = self._dense(model)
        return (loaded.scorer, loaded.resolved.identity) if loaded is not None else None

    def _dense(self, model: str | None) -> _Loaded | None:
        loaded = self._get(self._spec(model))
        return loaded if getattr(loaded.scorer, "dense", False) else None

    def passage_fingerprint(self, model: str | None = None) -> str | None:
        """The fingerprint of the model's passage tower (None: not a dense model). Vectors stored by
        a collection with the same fingerprint are exactly what this model would compute."""
        dense = self.dense(model)
        return dense[0].passage_fingerprint() if dense else None

    def embed_queries(self, queries: list[str], model: str | None = None) -> np.ndarray:
        """The model's query vectors (its adapted query tower where it has one), cached per version,
        so a query embedded for retrieval is not embedded again for reranking."""
        dense = self._dense(model)
        if dense is None:
            raise InputError("model", f"{model or self.default_model!r} is not a bi-encoder-family model")
        scorer, resolved = dense.scorer, dense.resolved
        key = f"{resolved.key}@{resolved.version}"
        cache = self._query_vectors.get(key)
        if cache is None:
            cache = self._query_vectors.setdefault(key, VectorCache(4096))
        return cache.embed(list(queries), scorer.embed_queries)

    def score_embedded(
        self, queries: list[str], passage_vectors: Any, fingerprint: str | None, model: str | None = None
    ) -> tuple[np.ndarray, ModelIdentity] | None:
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
    ) -> tuple[np.ndarray, ModelIdentity] | None:
        return await asyncio.to_thread(self.score_embedded, queries, passage_vectors, fingerprint, model)

    def close(self) -> None:
        for loaded in list(self._loaded.values()):
            if loaded.batcher is not None:
                loaded.batcher.close()


def _submit(loaded: _Loaded, pairs: list[tuple[str, str]]):
    """The batcher's future, or None to score directly: without a batcher, or when this model was
    evicted or swapped out between looking it up and submitting (its batcher is closed)."""
    if loaded.batcher is None:
        return None
    try:
        return loaded.batcher.submit(pairs)
    except BatcherClosed:
        return None


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
