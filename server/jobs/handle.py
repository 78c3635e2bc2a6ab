"""What a running job function sees: its parameters, progress, cancellation, checkpoints."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from adaptrank.core.errors import Cancelled
from adaptrank.server.jobs.models import JobInfo, JobProgress

if TYPE_CHECKING:
    from adaptrank.server.jobs.manager import JobManager


class JobHandle:
    """What a running job function sees: its parameters, progress, cancellation, checkpoints."""

    def __init__(self, manager: JobManager, info: JobInfo, checkpoint_dir: Path, resumed: bool) -> None:
        self.manager = manager
        self.id = info.id
        self.kind = info.kind
        self.params = dict(info.params)
        self.checkpoint_dir = checkpoint_dir
        self.resumed = resumed
        self._cancel = threading.Event()
        self._lost = False  # another replica took the job over: write nothing more for it
        self._last_db_write = 0.0
        self._last_cancel_poll = 0.0
        self._progress = JobProgress()

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress. Listeners get every call; the database at most every 0.5 s."""
        self._progress = JobProgress(
            done=done,
            total=total if total is not None else self._progress.total,
            message=message if message is not None else self._progress.message,
        )
        now = time.time()
        final = self._progress.total is not None and done >= self._progress.total
        if final or now - self._last_db_write >= 0.5:
            self._last_db_write = now
            self.manager._update_owned(
                self.id, done=self._progress.done, total=self._progress.total, message=self._progress.message
            )
        self.manager._notify(self.id, self._progress)

    @property
    def cancelled(self) -> bool:
        """True once someone (this process or another) asked to cancel."""
        if self._cancel.is_set():
            return True
        now = time.time()
        if now - self._last_cancel_poll >= 0.5:
            self._last_cancel_poll = now
            if self.manager.store.cancel_requested(self.id):
                self._cancel.set()
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self.cancelled:
            raise Cancelled(f"job {self.id} was cancelled")
