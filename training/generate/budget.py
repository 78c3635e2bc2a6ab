"""A wall-time budget for generation: stop starting document batches when the next would overrun.

Why: query generation is the long part of ``adapt``, and its speed depends on the CPU far more than
on anything a user sets (the same 1,000 documents took about 11 minutes on an EPYC with AVX512-BF16
and about 31 on one with AVX2 only). A fixed document count makes the slow machine wait three
times as long; a budget gives it fewer documents instead, drawn as a random sample (the pipeline
processes documents in a seeded random order, so any prefix is one), and the card says where it
stopped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable


class TimeBudget:
    """``fits_next()``: whether one more batch, at the pace of the recent ones, ends inside
    ``minutes`` (0: no budget). The clock starts at ``started`` (a ``perf_counter`` reading) and
    counts ``prior_batches`` (seconds of batches a resumed run already did) as spent."""

    def __init__(self, minutes: float, started: float, prior_batches: Iterable[float] = ()) -> None:
        self.minutes = minutes
        self.started = started
        self.batches = [float(s) for s in prior_batches]
        self.spent_before = sum(self.batches)

    def batch_took(self, seconds: float) -> None:
        self.batches.append(seconds)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started + self.spent_before

    def fits_next(self) -> bool:
        if not self.minutes or not self.batches:  # no budget, or no pace yet: the first batch always runs
            return True
        recent = self.batches[-4:]
        return self.elapsed() + sum(recent) / len(recent) <= self.minutes * 60
