"""Give a dropped model's memory back to the operating system.

A model swapped out by a promotion or evicted from the LRU is freed by Python, but glibc keeps most
of the freed heap (its mmap threshold grows to the size of the tensors it has freed, so the next
model's tensors come from the heap, not fresh maps). A server that promotes a model every minute
then grows by hundreds of MB per promotion (bench/soak.py measured +1.1 GB in five minutes).
:func:`release_when_freed` asks glibc to return free heap memory (``malloc_trim``) right when the
old model is really gone, i.e. after the last in-flight request that used it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import weakref
from typing import Any

log = logging.getLogger(__name__)


def _malloc_trim() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Collect cycles (a model's modules hold some), then return free heap pages to the OS."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)


def release_when_freed(obj: Any) -> None:
    """Call :func:`release_memory` once ``obj`` (a scorer being dropped) is deallocated."""
    try:
        weakref.finalize(obj, release_memory)
    except TypeError:  # an object without weakref support: release now, best effort
        release_memory()
