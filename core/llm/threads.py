"""Torch's intra-op thread count for the embedded LLM, re-picked batch by batch from how busy the
machine is.

Why: decoding a 135M model is thousands of tiny ops per batch, each an OpenMP parallel region that
waits for all its threads. When another process holds one of a 2-core machine's cores, every region
waits for a descheduled thread, and 2 threads ran 1.5-6x *slower* than 1 (the same GARD prompts,
alternated: 24.6-127 s against 16.4-25 s at load 4-5; on a quiet machine 2 threads were 1.5x
faster). A shared machine had made generation 3-4x slower than a quiet one; a fixed choice at load
time cannot follow load that comes and goes, this does. Figures: docs/generation.md#threads.
"""

from __future__ import annotations

import os
import time


class ThreadGovernor:
    """``max - round(others)`` threads (at least 1) before every batch, where ``others`` is the
    number of cores other processes kept busy during the previous batch (``/proc/stat`` busy time
    minus this process's CPU time, over the wall time). Without ``/proc/stat`` (not Linux) it never
    changes anything. :meth:`restore` gives torch's process-wide count back (fine-tuning shares the
    process)."""

    def __init__(self, max_threads: int) -> None:
        self.max = max(1, int(max_threads))
        self.last: tuple[float, float, float] | None = None
        self.current = self.max
        try:
            self.tick = float(os.sysconf("SC_CLK_TCK"))
        except (ValueError, OSError, AttributeError):
            self.tick = 100.0

    def _sample(self) -> tuple[float, float, float] | None:
        """(CPU-seconds busy on the whole machine, this process's CPU-seconds, wall seconds)."""
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(x) for x in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        busy = (sum(fields) - fields[3] - fields[4]) / self.tick  # all but idle and iowait
        return busy, time.process_time(), time.perf_counter()

    @staticmethod
    def others(before: tuple[float, float, float], now: tuple[float, float, float]) -> float | None:
        wall = now[2] - before[2]
        if wall < 0.5:  # too short to measure
            return None
        return max(0.0, ((now[0] - before[0]) - (now[1] - before[1])) / wall)

    def pick(self) -> int:
        import torch

        now = self._sample()
        if self.max > 1 and now is not None and self.last is not None:
            others = self.others(self.last, now)
            if others is not None:
                self.current = min(self.max, max(1, self.max - round(others)))
        if now is not None:
            self.last = now
        if torch.get_num_threads() != self.current:
            torch.set_num_threads(self.current)
        return self.current

    def restore(self) -> None:
        import torch

        if torch.get_num_threads() != self.max:
            torch.set_num_threads(self.max)
