"""Bounded LRU caches of the engine: scores keyed by (model version, query hash, document hash),
and vectors keyed by text hash (a bi-encoder's passage or query embeddings).

Agents re-rank overlapping pools again and again; a cached pair costs a dict lookup instead of a
forward pass. The model *version* is part of every key, so promoting a new model never serves
stale scores.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from adaptrank.core.text import text_key


class LRU:
    """A thread-safe least-recently-used map with a fixed capacity (0 or less: stores nothing)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
            else:
                self._data.move_to_end(key)
                self.hits += 1
            return value

    def put(self, key: Hashable, value: Any) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class ScoreCache:
    """Scores of (query, document) pairs per model version."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lru = LRU(capacity)

    @property
    def hits(self) -> int:
        return self._lru.hits

    @property
    def misses(self) -> int:
        return self._lru.misses

    def get_many(self, model_key: str, pairs: list[tuple[str, str]]) -> list[float | None]:
        if self.capacity <= 0:
            self._lru.misses += len(pairs)
            return [None] * len(pairs)
        return [self._lru.get((model_key, text_key(q), text_key(d))) for q, d in pairs]

    def put_many(self, model_key: str, pairs: list[tuple[str, str]], scores: list[float]) -> None:
        for (q, d), s in zip(pairs, scores, strict=True):
            self._lru.put((model_key, text_key(q), text_key(d)), float(s))

    def __len__(self) -> int:
        return len(self._lru)


class VectorCache:
    """Embeddings by text (one model per cache): ``lookup`` returns the cached rows and the
    indices still to embed; ``store`` fills them in."""

    def __init__(self, capacity: int) -> None:
        self._lru = LRU(capacity)

    def embed(self, texts: list[str], encode: Any) -> Any:
        """``encode(missing texts) -> array`` runs only for texts not cached; rows in ``texts`` order."""
        import numpy as np

        keys = [text_key(t) for t in texts]
        rows: list[Any] = [self._lru.get(k) for k in keys]
        missing = [i for i, v in enumerate(rows) if v is None]
        if missing:
            fresh = encode([texts[i] for i in missing])
            for j, i in enumerate(missing):
                rows[i] = fresh[j]
                self._lru.put(keys[i], fresh[j])
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack(rows)

    def __len__(self) -> int:
        return len(self._lru)


_shared: dict[str, VectorCache] = {}
_shared_lock = threading.Lock()


def shared_vectors(fingerprint: str, capacity: int = 20_000) -> VectorCache:
    """The process-wide cache of one passage tower's vectors, by the tower's content fingerprint.

    Why: the zero-shot bi-encoder and every query-encoder version built on it embed passages with
    the same frozen weights; an evaluation of several versions, or a server holding several, then
    embeds each passage once instead of once per model."""
    with _shared_lock:
        cache = _shared.get(fingerprint)
        if cache is None:
            cache = _shared[fingerprint] = VectorCache(capacity)
        return cache
