"""A micro-batcher: concurrent requests are merged into shared forward passes, fairly.

Like text-embeddings-inference, a worker thread takes the first waiting request, keeps collecting
requests for at most ``wait_ms`` (or until ``max_pairs``), scores their pairs in one call, and hands
each caller back its own scores. Requests that arrive while a pass runs join the next one, so under
load the device sees large, length-sorted batches instead of many small ones.

A pass holds at most ``pass_tokens`` (estimated) tokens. A request larger than that is scored over
several passes, and every pass gives each waiting request a fair share of the budget first (at
least one pair each), so a small request that arrives while a huge one is being scored gets into
the very next pass instead of waiting for the whole huge request: one client cannot starve the
others (head-of-line blocking). Leftover budget in a pass goes to whoever still has pairs.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

ScoreFn = Callable[[list[tuple[str, str]]], np.ndarray]
CostFn = Callable[[str, str], int]
#: ``on_pass(pairs, requests)`` after each forward pass: how many pairs, merged from how many requests
PassFn = Callable[[int, int], None]


def estimated_tokens(query: str, document: str) -> int:
    """A cheap token estimate for budgeting passes (about 4 characters per token)."""
    return (len(query) + len(document)) // 4 + 3


class BatcherClosed(RuntimeError):
    """``submit`` after ``close``: the caller scores directly instead (see ``Reranker``)."""


@dataclass(eq=False)
class _Request:
    pairs: list[tuple[str, str]]
    costs: list[int]
    future: Future = field(default_factory=Future)
    next: int = 0  # pairs before this index are scored
    scores: np.ndarray | None = None


@dataclass
class BatcherStats:
    forward_calls: int = 0
    requests: int = 0
    pairs: int = 0
    largest_merge: int = 0


class MicroBatcher:
    def __init__(
        self,
        fn: ScoreFn,
        wait_ms: float = 2.0,
        max_pairs: int = 1024,
        pass_tokens: int = 16384,
        cost: CostFn = estimated_tokens,
        on_pass: PassFn | None = None,
    ) -> None:
        self.fn = fn
        self.on_pass = on_pass
        self.wait = wait_ms / 1000.0
        self.max_pairs = max_pairs
        self.pass_tokens = pass_tokens
        self.cost = cost
        self.stats = BatcherStats()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, pairs: list[tuple[str, str]]) -> Future:
        """Queue pairs for scoring; the future resolves to their scores, in order."""
        pairs = list(pairs)
        req = _Request(pairs, [max(1, self.cost(q, d)) for q, d in pairs])
        with self._lock:
            if self._closed:
                raise BatcherClosed("batcher is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="adaptrank-batcher", daemon=True)
                self._thread.start()
            self._queue.put(req)
        return req.future

    def close(self) -> None:
        """Stop after the queued requests are served (a model swapped out or evicted)."""
        with self._lock:
            self._closed = True
            if self._thread is not None:
                self._queue.put(None)

    # -- the worker ------------------------------------------------------------------------------
    def _admit(self, req: _Request, active: list[_Request]) -> None:
        if req.future.set_running_or_notify_cancel():
            if not req.pairs:
                req.future.set_result(np.zeros(0))
            else:
                req.scores = np.zeros(len(req.pairs), dtype=np.float64)
                active.append(req)

    def _collect(self, active: list[_Request]) -> bool:
        """Take waiting requests into ``active``; True once ``close`` was called. With nothing
        active, block for a first request, then gather others for up to ``wait``."""
        stop = False
        if not active:
            first = self._queue.get()
            if first is None:
                return True
            self._admit(first, active)
            deadline = time.monotonic() + self.wait
            pending = len(first.pairs)
            while pending < self.max_pairs:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    return True
                self._admit(nxt, active)
                pending += len(nxt.pairs)
            return stop
        while True:  # a pass is already due: take whatever arrived meanwhile, without waiting
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return stop
            if nxt is None:
                stop = True
                continue
            self._admit(nxt, active)

    def _plan(self, active: list[_Request]) -> list[tuple[_Request, int, int]]:
        """Each active request's slice ``[lo, hi)`` for the next pass: a fair share of the token
        budget for everyone first (at least one pair each), then the leftover in arrival order."""
        share = max(1, self.pass_tokens // len(active))
        ends: dict[_Request, int] = {}
        used = n = 0
        for r in active:
            hi, spent = r.next, 0
            while hi < len(r.pairs) and n < self.max_pairs and (hi == r.next or spent + r.costs[hi] <= share):
                spent += r.costs[hi]
                hi, n = hi + 1, n + 1
            ends[r] = hi
            used += spent
        for r in active:
            hi = ends[r]
            while hi < len(r.pairs) and n < self.max_pairs and used + r.costs[hi] <= self.pass_tokens:
                used += r.costs[hi]
                hi, n = hi + 1, n + 1
            ends[r] = hi
        return [(r, r.next, ends[r]) for r in active if ends[r] > r.next]

    def _run(self) -> None:
        active: list[_Request] = []
        stopping = False
        while True:
            if not stopping:
                stopping = self._collect(active)
            if not active:
                if stopping:
                    return
                continue
            self._serve(self._plan(active))
            active[:] = [r for r in active if not r.future.done()]

    def _serve(self, plan: list[tuple[_Request, int, int]]) -> None:
        pairs = [p for r, lo, hi in plan for p in r.pairs[lo:hi]]
        try:
            scores = np.asarray(self.fn(pairs), dtype=np.float64)
        except BaseException as exc:  # noqa: BLE001 - every caller in the pass must hear about it
            for r, _, _ in plan:
                r.future.set_exception(exc)
            return
        s = self.stats
        s.forward_calls += 1
        s.pairs += len(pairs)
        s.largest_merge = max(s.largest_merge, len(plan))
        start = 0
        for r, lo, hi in plan:
            r.scores[lo:hi] = scores[start : start + hi - lo]  # type: ignore[index]
            start += hi - lo
            r.next = hi
            if hi == len(r.pairs):
                s.requests += 1
                r.future.set_result(r.scores)
        if self.on_pass is not None:
            try:
                self.on_pass(len(pairs), len(plan))
            except Exception:
                log.exception("on_pass failed")
