"""LRU score cache keyed by (model version, query hash, document hash).

Agents re-rank overlapping pools again and again; a cached pair costs a dict lookup instead of a
forward pass. The model *version* is part of the key, so promoting a new model never serves stale
scores.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class ScoreCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data: OrderedDict[tuple[str, bytes, bytes], float] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_many(self, model_key: str, pairs: list[tuple[str, str]]) -> list[float | None]:
        if self.capacity <= 0:
            self.misses += len(pairs)
            return [None] * len(pairs)
        out: list[float | None] = []
        with self._lock:
            for q, d in pairs:
                key = (model_key, text_key(q), text_key(d))
                value = self._data.get(key)
                if value is None:
                    self.misses += 1
                else:
                    self._data.move_to_end(key)
                    self.hits += 1
                out.append(value)
        return out

    def put_many(self, model_key: str, pairs: list[tuple[str, str]], scores: list[float]) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            for (q, d), s in zip(pairs, scores, strict=True):
                key = (model_key, text_key(q), text_key(d))
                self._data[key] = float(s)
                self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
