# Over 400 lines: one class (the Chroma store) and the connection handling every method of it shares.
"""The document store: Chroma, embedded by default, a ``chroma run`` server when configured.

``DocStore(settings)`` opens ``PersistentClient(settings.chroma_dir)``, or ``HttpClient`` when
``settings.chroma_url`` is set (e.g. ``http://127.0.0.1:8010`` for
``chroma run --path DIR --host 127.0.0.1 --port 8010``). Every collection it creates uses cosine
space and :class:`~adaptrank.core.embeddings.AdaptRankEmbeddingFunction` (the offline MiniLM unless
``settings.embedding_model`` says otherwise), so Chroma never reaches for its downloading default.

Scores are cosine similarities (``1 - cosine distance``), highest first. Chroma's embedded mode
is one process per directory: run a server when several processes share a store.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from adaptrank.core.errors import AdaptRankError, InputError, NotFoundError
from adaptrank.core.progress import CountProgress
from adaptrank.core.settings import Settings, get_settings

if TYPE_CHECKING:  # chromadb is imported on first use, so importing this module stays cheap
    from adaptrank.core.embeddings import AdaptRankEmbeddingFunction

# Chroma's own rule: 3-512 characters of [a-zA-Z0-9._-], starting and ending with a letter or digit.
COLLECTION_RE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9._-]{1,510})[a-zA-Z0-9]$")


Metadata = dict[str, str | int | float | bool]


class StoreUnavailableError(AdaptRankError, ConnectionError):
    """The configured Chroma server does not answer."""


def _reachable(method: Callable) -> Callable:
    """A Chroma server that stops answering mid-call is a ``StoreUnavailableError`` naming it, not
    an internal error; the next call tries again (a restarted server is used as soon as it is up)."""
    import functools
    import inspect

    def unavailable(self: DocStore, exc: Exception) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"chroma_url: the Chroma server at {self.settings.chroma_url} stopped answering "
            f"({type(exc).__name__}: {exc}); try again once it is back"
        )

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def generator(self: DocStore, *args: Any, **kwargs: Any) -> Any:
            import httpx

            try:
                yield from method(self, *args, **kwargs)
            except httpx.TransportError as exc:
                raise unavailable(self, exc) from None

        return generator

    @functools.wraps(method)
    def wrapper(self: DocStore, *args: Any, **kwargs: Any) -> Any:
        import httpx

        try:
            return method(self, *args, **kwargs)
        except httpx.TransportError as exc:
            raise unavailable(self, exc) from None

    return wrapper


@dataclass
class Hit:
    """One retrieved passage. ``score`` is the cosine similarity to the query (higher is better).

    ``embedding``: the stored passage vector, when the caller asked for it (``include_embeddings``),
    so a bi-encoder-family reranker scores the pool without embedding the passages again.
    """

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    score: float = 0.0
    embedding: Any = field(default=None, repr=False, compare=False)


#: collection metadata key: the content fingerprint of the model that embedded the collection
#: (``core.embeddings.model_fingerprint``), written when an empty collection gets its first vectors
FINGERPRINT_KEY = "adaptrank_embedding_fingerprint"


def validate_collection_name(name: str) -> str:
    if not isinstance(name, str) or not COLLECTION_RE.match(name) or ".." in name:
        raise InputError(
            "collection",
            f"{name!r} is not a valid name: 3-512 characters of letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit, no '..'",
        )
    return name


def clean_metadata(meta: dict[str, Any] | None) -> Metadata:
    """Chroma stores scalar values only: drop ``None``, JSON-encode lists and dicts."""
    import json

    out: Metadata = {}
    for key, value in (meta or {}).items():
        if value is None:
            continue
        if isinstance(value, bool | int | str):
            out[str(key)] = value
        elif isinstance(value, float):
            if math.isfinite(value):
                out[str(key)] = value
        else:
            out[str(key)] = json.dumps(value, ensure_ascii=False, default=str)
    return out


class DocStore:
    """Collections of passages with local embeddings.

    >>> store = DocStore(Settings(home=tmp))
    >>> store.upsert("notes", ["a#0"], ["Gout is caused by uric acid crystals."])
    >>> store.query("notes", ["what causes gout?"], k=5)[0][0].score
    """

    def __init__(self, settings: Settings | None = None, *, client: Any = None) -> None:
        from adaptrank.core.embeddings import AdaptRankEmbeddingFunction

        self.settings = settings or get_settings()
        self.embedding_function: AdaptRankEmbeddingFunction = AdaptRankEmbeddingFunction.from_settings(self.settings)
        self._client = client
        self._lock = threading.Lock()

    # -- connection ----------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        import chromadb

        # Chroma's default client settings on purpose: an embedded client for one path must share
        # its settings with any other client of that path in the process (e.g. a user's own
        # PersistentClient for LlamaIndex), and product telemetry is a no-op in chromadb 1.5.
        url = self.settings.chroma_url
        if url:
            parsed = urlparse(url if "://" in url else f"http://{url}")
            if not parsed.hostname:
                raise InputError("chroma_url", f"{url!r} is not a URL like http://127.0.0.1:8010")
            ssl = parsed.scheme == "https"
            try:  # the client itself already calls the server (user identity)
                client = chromadb.HttpClient(host=parsed.hostname, port=parsed.port or (443 if ssl else 8000), ssl=ssl)
                client.heartbeat()
            except Exception as exc:  # noqa: BLE001 - any transport error means "not reachable"
                raise StoreUnavailableError(
                    f"chroma_url: no Chroma server answers at {url} ({type(exc).__name__}: {exc}). "
                    "Start one with `chroma run --path DIR --host 127.0.0.1 --port N`, or unset ADAPTRANK_CHROMA_URL."
                ) from None
            return client
        self.settings.chroma_dir.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(self.settings.chroma_dir))

    @property
    def location(self) -> str:
        return self.settings.chroma_url or str(self.settings.chroma_dir)

    # -- collections ---------------------------------------------------------------------------
    @_reachable
    def list_collections(self) -> list[str]:
        return sorted(c if isinstance(c, str) else c.name for c in self.client.list_collections())

    @_reachable
    def collection(self, name: str, create: bool = False) -> Any:
        """The Chroma collection ``name`` with our embedding function attached.

        Missing and ``create=False``: :class:`NotFoundError` naming the known collections.
        """
        from chromadb.errors import NotFoundError as ChromaNotFound

        validate_collection_name(name)
        ef = self.embedding_function
        if create:
            col = self.client.get_or_create_collection(
                name, embedding_function=ef, configuration={"hnsw": {"space": "cosine"}}
            )
        else:
            try:
                col = self.client.get_collection(name, embedding_function=ef)
            except (ChromaNotFound, ValueError) as exc:
                if isinstance(exc, ValueError) and "does not exist" not in str(exc):
                    raise
                known = self.list_collections()
                raise NotFoundError(
                    "collection",
                    f"no collection {name!r} in {self.location}; known: {known or 'none'}. "
                    "Create one with `adaptrank ingest PATH --collection NAME`.",
                ) from None
        self._check_model(col)
        return col

    def _check_model(self, col: Any) -> None:
        from adaptrank.core.embeddings import model_path

        ef_conf = (col.configuration_json or {}).get("embedding_function") or {}
        if ef_conf.get("name") != self.embedding_function.name():
            return  # a collection adaptrank did not create: embeddings come from our function anyway
        stored = (ef_conf.get("config") or {}).get("model")
        ours = self.embedding_function.model
        if stored and model_path(stored) != model_path(ours):
            raise InputError(
                "embedding_model",
                f"collection {col.name!r} was embedded with {stored!r} but this store embeds with {ours!r}; "
                "set ADAPTRANK_EMBEDDING_MODEL to match or ingest into a new collection",
            )

    @_reachable
    def count(self, name: str) -> int:
        return int(self.collection(name).count())

    @_reachable
    def delete_collection(self, name: str) -> None:
        self.collection(name)  # NotFoundError with the known names when missing
        self.client.delete_collection(name)

    # -- writing -------------------------------------------------------------------------------
    @_reachable
    def upsert(
        self,
        name: str,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any] | None] | None = None,
        batch_size: int = 64,
        progress: bool | CountProgress = True,
        create: bool = True,
    ) -> int:
        """Insert or replace passages by id, embedding them in batches. Returns the count written.

        ``progress``: ``True`` for a tqdm bar, a ``(done, total)`` callback, or ``False``.
        """
        if len(ids) != len(texts) or (metadatas is not None and len(metadatas) != len(ids)):
            raise InputError("ids", "ids, texts and metadatas must have the same length")
        if len(set(ids)) != len(ids):
            raise InputError("ids", "contains duplicates")
        if batch_size < 1:
            raise InputError("batch_size", f"is {batch_size}; it must be at least 1")
        if not ids:
            return 0
        col = self.collection(name, create=create)
        if FINGERPRINT_KEY not in (col.metadata or {}) and col.count() == 0:
            # Only an empty collection gets the stamp: vectors already stored may come from other weights.
            from adaptrank.core.embeddings import model_fingerprint

            col.modify(
                metadata={**(col.metadata or {}), FINGERPRINT_KEY: model_fingerprint(self.embedding_function.model)}
            )
        batch_size = min(batch_size, self.client.get_max_batch_size())
        total = len(ids)
        bar = _Bar(progress, total, f"embedding into {name}")
        try:
            for lo in range(0, total, batch_size):
                hi = min(lo + batch_size, total)
                docs = [str(t) for t in texts[lo:hi]]
                metas = [clean_metadata(m) or None for m in metadatas[lo:hi]] if metadatas is not None else None
                if metas is not None and all(m is None for m in metas):
                    metas = None  # chroma refuses empty dicts but takes None entries
                col.upsert(
                    ids=list(ids[lo:hi]),
                    documents=docs,
                    metadatas=metas,
                    embeddings=self.embedding_function.embed(docs),
                )
                bar(hi - lo, hi, total)
        finally:
            bar.close()
        return total

    @_reachable
    def delete(self, name: str, ids: Sequence[str] | None = None, where: dict[str, Any] | None = None) -> None:
        if not ids and not where:
            return
        self.collection(name).delete(ids=list(ids) if ids else None, where=where)

    # -- reading -------------------------------------------------------------------------------
    @_reachable
    def embedding_fingerprint(self, name: str) -> str | None:
        """The fingerprint of the model whose vectors ``name`` stores (None: not recorded, e.g. a
        collection made by an older adaptrank or by another tool; re-ingest into a new one to get it)."""
        value = (self.collection(name).metadata or {}).get(FINGERPRINT_KEY)
        return str(value) if value else None

    @_reachable
    def query(
        self,
        name: str,
        texts: list[str],
        k: int,
        where: dict[str, Any] | None = None,
        *,
        query_embeddings: Any = None,
        include_embeddings: bool = False,
    ) -> list[list[Hit]]:
        """The ``k`` nearest passages for each query text, best first.

        ``query_embeddings``: the queries' vectors from another query tower (an adapted reranker's,
        whose passage side is this collection's model); default: this store's model embeds them.
        ``include_embeddings``: each hit carries its stored vector.
        """
        if isinstance(texts, str):
            raise InputError("texts", "must be a list of query strings, not one string")
        if k < 1:
            raise InputError("k", f"is {k}; it must be at least 1")
        if not texts:
            return []
        col = self.collection(name)
        n = col.count()
        if n == 0:
            return [[] for _ in texts]
        vectors = self.embedding_function.embed(list(texts)) if query_embeddings is None else query_embeddings
        include = ["documents", "metadatas", "distances"] + (["embeddings"] if include_embeddings else [])
        res = col.query(query_embeddings=vectors, n_results=min(k, n), where=where, include=include)
        out: list[list[Hit]] = []
        for row in range(len(texts)):
            metas = (res.get("metadatas") or [[]])[row] or []
            docs = (res.get("documents") or [[]])[row] or []
            dists = (res.get("distances") or [[]])[row] or []
            embs = res["embeddings"][row] if include_embeddings else None
            out.append(
                [
                    Hit(
                        id=i,
                        text=docs[j] or "",
                        metadata=dict(metas[j] or {}),
                        score=1.0 - float(dists[j]),
                        embedding=None if embs is None else embs[j],
                    )
                    for j, i in enumerate(res["ids"][row])
                ]
            )
        return out

    @_reachable
    def embeddings(self, name: str, ids: Sequence[str]) -> dict[str, Any]:
        """Stored vectors by id (missing ids are left out)."""
        if not ids:
            return {}
        res = self.collection(name).get(ids=list(dict.fromkeys(ids)), include=["embeddings"])
        return dict(zip(res["ids"], res["embeddings"], strict=True))

    @_reachable
    def get(self, name: str, ids: Sequence[str]) -> list[Hit]:
        """Passages by id (missing ids are skipped), in the order asked."""
        if not ids:
            return []
        res = self.collection(name).get(ids=list(ids), include=["documents", "metadatas"])
        found = {
            i: Hit(i, d or "", dict(m or {}), 0.0)
            for i, d, m in zip(res["ids"], res["documents"], res["metadatas"], strict=True)
        }
        return [found[i] for i in ids if i in found]

    @_reachable
    def iter_documents(
        self,
        name: str,
        batch_size: int = 1000,
        where: dict[str, Any] | None = None,
        include_text: bool = True,
        vectors: dict[str, Any] | None = None,
    ) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Every ``(id, text, metadata)`` of a collection, paged (stable order within one run).

        ``vectors``: a dict to fill with each passage's stored vector, by text (read in the same pages).
        """
        if batch_size < 1:
            raise InputError("batch_size", f"is {batch_size}; it must be at least 1")
        col = self.collection(name)
        include = (["documents", "metadatas"] if include_text or vectors is not None else ["metadatas"]) + (
            ["embeddings"] if vectors is not None else []
        )
        offset = 0
        while True:
            page = col.get(limit=batch_size, offset=offset, where=where, include=include)
            ids = page["ids"]
            if not ids:
                return
            docs = page.get("documents") or [None] * len(ids)
            if vectors is not None:
                for d, e in zip(docs, page["embeddings"], strict=True):
                    if d:
                        vectors.setdefault(d, e)
            for i, d, m in zip(ids, docs, page["metadatas"], strict=True):
                yield i, d or "", dict(m or {})
            if len(ids) < batch_size:
                return
            offset += len(ids)


class _Bar:
    """tqdm bar or callback behind one small interface."""

    def __init__(self, progress: bool | CountProgress, total: int, desc: str) -> None:
        self._cb = progress if callable(progress) else None
        self._tqdm = None
        if progress is True:
            from tqdm.auto import tqdm

            self._tqdm = tqdm(total=total, desc=desc, unit="passage", leave=False)

    def __call__(self, step: int, done: int, total: int) -> None:
        if self._tqdm is not None:
            self._tqdm.update(step)
        if self._cb is not None:
            self._cb(done, total)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
