"""The two shapes of progress callback, named once.

* :data:`CountProgress` ``(done, total)``: counted units of one step (passages embedded, chunks
  written); the document store, ingest and fine-tuning's passage bank report this way.
* :data:`StepProgress` ``(done, total or None, message or None)``: a long run's steps, as the job
  machinery records them (generation, fine-tuning, evaluation, adaptation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CountProgress = Callable[[int, int], Any]
StepProgress = Callable[[float, float | None, str | None], Any]
