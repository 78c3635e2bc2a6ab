"""A micro-batcher: concurrent requests are merged into one forward pass.

Like text-embeddings-inference, a worker thread takes the first waiting request, keeps collecting
requests for at most ``wait_ms`` (or until ``max_pairs``), scores all their pairs in one call, and
hands each caller back its own slice. Requests that arrive while a forward pass runs are merged into
the next one, so under load the device sees large, length-sorted batches instead of many small ones.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

ScoreFn = Callable[[list[tuple[str, str]]], np.ndarray]


@dataclass
class _Request:
    pairs: list[tuple[str, str]]
    future: Future = field(default_factory=Future)


@dataclass
class BatcherStats:
    forward_calls: int = 0
    requests: int = 0
    pairs: int = 0
    largest_merge: int = 0
    merges: list[int] = field(default_factory=list)


class MicroBatcher:
    def __init__(self, fn: ScoreFn, wait_ms: float = 2.0, max_pairs: int = 1024) -> None:
        self.fn = fn
        self.wait = wait_ms / 1000.0
        self.max_pairs = max_pairs
        self.stats = BatcherStats()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, pairs: list[tuple[str, str]]) -> Future:
        """Queue pairs for scoring; the future resolves to their scores, in order."""
        req = _Request(list(pairs))
        with self._lock:
            if self._closed:
                raise RuntimeError("batcher is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="adaptrank-batcher", daemon=True)
                self._thread.start()
            self._queue.put(req)
        return req.future

    def close(self) -> None:
        """Stop after the queued requests are served (used when a model is swapped out)."""
        with self._lock:
            self._closed = True
            if self._thread is not None:
                self._queue.put(None)

    def _collect(self, first: _Request) -> tuple[list[_Request], bool]:
        batch = [first]
        n = len(first.pairs)
        deadline = time.monotonic() + self.wait
        while n < self.max_pairs:
            try:
                nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if nxt is None:
                return batch, True
            batch.append(nxt)
            n += len(nxt.pairs)
        return batch, False

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            batch = [r for r in batch if r.future.set_running_or_notify_cancel()]
            if batch:
                self._serve(batch)
            if stop:
                return

    def _serve(self, batch: list[_Request]) -> None:
        pairs = [p for r in batch for p in r.pairs]
        try:
            scores = self.fn(pairs)
        except BaseException as exc:  # noqa: BLE001 - every caller must hear about it
            for r in batch:
                r.future.set_exception(exc)
            return
        s = self.stats
        s.forward_calls += 1
        s.requests += len(batch)
        s.pairs += len(pairs)
        s.largest_merge = max(s.largest_merge, len(batch))
        s.merges.append(len(batch))
        del s.merges[:-1000]
        start = 0
        for r in batch:
            r.future.set_result(np.asarray(scores[start : start + len(r.pairs)]))
            start += len(r.pairs)
