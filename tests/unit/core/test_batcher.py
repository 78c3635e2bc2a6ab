"""Issue 9, defect 6: one huge request must not starve small ones in the micro-batcher.

The scorer here is a stand-in whose cost grows with the tokens it is given (the batcher only
sees a function), so pass sizes and waiting times are exact and the test is fast.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from adaptrank.core.engine.batcher import BatcherClosed, MicroBatcher, estimated_tokens

pytestmark = pytest.mark.timeout(120)


class SlowScorer:
    """Scores a pair by a hash of its texts; sleeps ``seconds_per_token`` per estimated token."""

    def __init__(self, seconds_per_token: float) -> None:
        self.seconds_per_token = seconds_per_token
        self.passes: list[list[tuple[str, str]]] = []
        self.lock = threading.Lock()

    @staticmethod
    def expected(pairs):
        return np.array([float(hash(p) % 1000) for p in pairs])

    def __call__(self, pairs):
        with self.lock:
            self.passes.append(list(pairs))
        time.sleep(self.seconds_per_token * sum(estimated_tokens(q, d) for q, d in pairs))
        return self.expected(pairs)


def test_a_small_request_gets_into_the_next_pass_of_a_huge_one():
    scorer = SlowScorer(seconds_per_token=2e-5)  # a 2,000-token pass takes 40 ms
    batcher = MicroBatcher(scorer, wait_ms=1, pass_tokens=2000)
    huge = [("query", "word " * 100) for _ in range(1000)]  # ~128k tokens: ~64 passes, ~2.6 s
    huge_future = batcher.submit(huge)
    while not scorer.passes:
        time.sleep(0.005)
    t0 = time.monotonic()
    small_pairs = [("q", "small one"), ("q", "small two")]
    small = batcher.submit(small_pairs)
    small_scores = small.result(timeout=30)
    small_latency = time.monotonic() - t0
    assert not huge_future.done(), "the small request waited for the whole huge one"
    huge_scores = huge_future.result(timeout=60)
    np.testing.assert_array_equal(small_scores, SlowScorer.expected(small_pairs))
    np.testing.assert_array_equal(huge_scores, SlowScorer.expected(huge))
    # It rode along in the very next pass (at most one pass in flight when it arrived).
    first_with_small = next(i for i, p in enumerate(scorer.passes) if small_pairs[0] in p)
    served_before = sum(len(p) for p in scorer.passes[:first_with_small] if small_pairs[0] not in p)
    assert served_before <= 2 * 2000 // estimated_tokens(*huge[0]) + 2
    print(
        f"\nsmall request: {small_latency * 1000:.0f} ms while a {len(huge)}-pair request took "
        f"{len(scorer.passes)} passes"
    )
    assert small_latency < 0.5
    batcher.close()


def test_passes_share_the_budget_fairly_and_keep_each_callers_order():
    scorer = SlowScorer(seconds_per_token=0)
    gate = threading.Event()
    original = scorer.__call__

    def gated(pairs):
        gate.wait(10)
        return original(pairs)

    batcher = MicroBatcher(gated, wait_ms=50, pass_tokens=400)
    requests = [[(f"q{r}", f"doc {r} {i} " + "x" * 40) for i in range(n)] for r, n in enumerate([60, 3, 25, 1])]
    futures = [batcher.submit(p) for p in requests]
    gate.set()
    for p, f in zip(requests, futures, strict=True):
        np.testing.assert_array_equal(f.result(timeout=30), SlowScorer.expected(p))
    first = scorer.passes[0]
    # every request got pairs in the first pass, and the pass kept to the budget
    assert all(any(pair in first for pair in p) for p in requests)
    assert sum(estimated_tokens(q, d) for q, d in first) <= 400
    assert batcher.stats.requests == 4
    batcher.close()


def test_failures_reach_every_caller_of_the_pass_and_close_refuses_new_work():
    def broken(pairs):
        raise RuntimeError("boom")

    batcher = MicroBatcher(broken, wait_ms=20)
    futures = [batcher.submit([("q", "d")]) for _ in range(3)]
    for f in futures:
        with pytest.raises(RuntimeError, match="boom"):
            f.result(timeout=10)
    batcher.close()
    with pytest.raises(BatcherClosed):
        batcher.submit([("q", "d")])
