"""Background jobs recorded in SQLite: generation and fine-tuning run here.

A job is a function ``fn(handle) -> dict | None`` looked up by *kind* (``"generate"``,
``"finetune"``) in :data:`JOB_KINDS` (``"module:function"``, imported lazily), so a job can be
resumed by a new process after a restart. The function reads its parameters from
``handle.params``, reports ``handle.progress(done, total, message)``, calls
``handle.check_cancelled()`` between units of work, and keeps whatever lets it resume in
``handle.checkpoint_dir``. Its return value (JSON-able) becomes the job's ``result``.

States: ``queued -> running -> succeeded | failed | cancelled``. A job found ``running`` (or
``queued``) whose owning process is gone becomes ``interrupted``; ``resume(id)`` runs it again with
the same parameters and checkpoint directory (``handle.resumed`` is True).

One progress stream drives every view of a job: ``subscribe(id, callback)`` delivers each update
in-process (the CLI's progress bar, MCP progress notifications), and the same figures go to the
database (throttled) for ``job_status`` polling from other processes. Cancellation also crosses
processes: ``cancel`` sets a flag in the database that the running handle checks.

Usage::

    jobs = JobManager(settings)
    info = jobs.submit("generate", {"source": "beir", ...})
    jobs.subscribe(info.id, lambda job: print(job.progress))
    jobs.wait(info.id)
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import socket
import sqlite3
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from adaptrank.core.errors import AdaptRankError, InputError, NotFoundError
from adaptrank.core.settings import Settings

log = logging.getLogger(__name__)

#: job kind -> "module:function" taking a JobHandle: every kind, in this one table, so that any
#: process (a restarted server, the CLI) can resume any job. Parts add their kind here (one line).
JOB_KINDS: dict[str, str] = {
    "generate": "adaptrank.training.generate:run_job",
    "finetune": "adaptrank.training.finetune:run_job",
    "evaluate": "adaptrank.training.evaluate:run_job",
    "adapt": "adaptrank.training.adapt:run_job",
    "ingest": "adaptrank.server.tools_search:run_ingest_job",
}

JobFn = Callable[["JobHandle"], "dict[str, Any] | None"]


class JobState(str, Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    interrupted = "interrupted"


FINISHED = {JobState.succeeded, JobState.failed, JobState.cancelled, JobState.interrupted}
RESUMABLE = {JobState.interrupted, JobState.failed, JobState.cancelled}


class JobProgress(BaseModel):
    done: float = 0
    total: float | None = None
    message: str = ""

    @property
    def fraction(self) -> float | None:
        return (self.done / self.total) if self.total else None


class JobInfo(BaseModel):
    """What ``job_status`` returns."""

    id: str
    kind: str
    state: JobState
    params: dict[str, Any] = Field(default_factory=dict)
    progress: JobProgress = Field(default_factory=JobProgress)
    result: dict[str, Any] | None = None
    error: str | None = None
    created: float
    started: float | None = None
    finished: float | None = None
    updated: float
    attempts: int = 0
    cancel_requested: bool = False

    @property
    def finished_state(self) -> bool:
        return self.state in FINISHED


class JobCancelled(AdaptRankError):
    """Raised by :meth:`JobHandle.check_cancelled`; the job ends in state ``cancelled``."""


_SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    done REAL NOT NULL DEFAULT 0,
    total REAL,
    message TEXT NOT NULL DEFAULT '',
    result TEXT,
    error TEXT,
    traceback TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    updated REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created);
"""


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
            self.manager._update(
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
            if self.manager._cancel_requested(self.id):
                self._cancel.set()
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self.cancelled:
            raise JobCancelled(f"job {self.id} was cancelled")


class JobManager:
    """Runs job functions in worker threads and records them in ``settings.jobs_db``.

    ``max_workers`` jobs run at once (default 1: on a small machine, two trainings at once only
    slow each other down); the rest wait in state ``queued``.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        db_path: Path | None = None,
        checkpoints_dir: Path | None = None,
        max_workers: int = 1,
        keep_checkpoints: bool = False,
    ) -> None:
        if settings is None and db_path is None:
            from adaptrank.core.settings import get_settings

            settings = get_settings()
        self.settings = settings
        self.db_path = Path(db_path or settings.jobs_db)  # type: ignore[union-attr]
        self.checkpoints_dir = Path(checkpoints_dir or self.db_path.parent / "jobs")
        self.keep_checkpoints = keep_checkpoints
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._kinds: dict[str, JobFn | str] = dict(JOB_KINDS)
        self._listeners: dict[str, list[Callable[[JobInfo], None]]] = {}
        self._handles: dict[str, JobHandle] = {}
        self._fns: dict[str, JobFn] = {}  # per-job function overrides (submit(fn=...))
        self._done_events: dict[str, threading.Event] = {}
        self._closing = False
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="adaptrank-job")
        with self._db() as db:
            db.executescript(_SCHEMA)
        self._mark_orphans_interrupted()

    # -- registration --------------------------------------------------------------------------
    def register(self, kind: str, fn: JobFn | str) -> None:
        """Add a job kind for this manager: a function or a lazy ``"module:function"``."""
        self._kinds[kind] = fn

    def _resolve(self, kind: str) -> JobFn:
        target = self._kinds.get(kind)
        if target is None:
            raise InputError("kind", f"unknown job kind {kind!r} (known: {sorted(self._kinds)})")
        if isinstance(target, str):
            module, _, func = target.partition(":")
            return getattr(importlib.import_module(module), func)
        return target

    # -- public API ----------------------------------------------------------------------------
    def submit(self, kind: str, params: dict[str, Any] | None = None, *, fn: JobFn | None = None) -> JobInfo:
        """Queue a job and return at once (state ``queued``).

        ``fn`` runs this one job instead of the kind's registered function (e.g. with objects that
        cannot be stored, like an MCP session for sampling); after a restart, ``resume`` uses the
        kind's function.
        """
        if fn is None:
            self._resolve(kind)  # fail now on an unknown kind, not in the worker
        params = dict(params or {})
        json.dumps(params)  # parameters must be JSON-able to be resumable
        now = time.time()
        job_id = uuid.uuid4().hex[:12]
        with self._db() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, state, params, created, updated, owner) VALUES (?,?,?,?,?,?,?)",
                (job_id, kind, JobState.queued.value, json.dumps(params), now, now, self.owner),
            )
        if fn is not None:
            self._fns[job_id] = fn
        self._start(job_id, resumed=False)
        return self.get(job_id)

    def resume(self, job_id: str, *, fn: JobFn | None = None) -> JobInfo:
        """Run an interrupted, failed or cancelled job again from its checkpoint."""
        info = self.get(job_id)
        if info.state not in RESUMABLE:
            raise InputError("job_id", f"job {job_id} is {info.state.value}; only {sorted(s.value for s in RESUMABLE)} jobs resume")
        if fn is not None:
            self._fns[job_id] = fn
        elif job_id not in self._fns:
            self._resolve(info.kind)
        with self._db() as db:
            db.execute(
                "UPDATE jobs SET state=?, error=NULL, traceback=NULL, finished=NULL, cancel_requested=0, "
                "owner=?, updated=? WHERE id=?",
                (JobState.queued.value, self.owner, time.time(), job_id),
            )
        self._start(job_id, resumed=True)
        return self.get(job_id)

    def get(self, job_id: str) -> JobInfo:
        with self._db() as db:
            row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"job_id: no job {job_id!r}")
        return _info(row)

    def list(self, kind: str | None = None, state: str | None = None, limit: int = 50) -> list[JobInfo]:
        """Newest first."""
        sql, args = "SELECT * FROM jobs WHERE 1=1", []
        if kind:
            sql, args = sql + " AND kind=?", [*args, kind]
        if state:
            sql, args = sql + " AND state=?", [*args, state]
        with self._db() as db:
            rows = db.execute(sql + " ORDER BY created DESC LIMIT ?", (*args, int(limit))).fetchall()
        return [_info(r) for r in rows]

    def cancel(self, job_id: str) -> JobInfo:
        """Ask a job to stop. A queued job is cancelled at once; a running one at its next check."""
        info = self.get(job_id)
        if info.finished_state:
            return info
        with self._db() as db:
            db.execute("UPDATE jobs SET cancel_requested=1, updated=? WHERE id=?", (time.time(), job_id))
            db.execute(
                "UPDATE jobs SET state=?, finished=? WHERE id=? AND state=?",
                (JobState.cancelled.value, time.time(), job_id, JobState.queued.value),
            )
        handle = self._handles.get(job_id)
        if handle is not None:
            handle._cancel.set()
        info = self.get(job_id)
        if info.state == JobState.cancelled:
            self._finish_notify(job_id)
        return info

    def wait(self, job_id: str, timeout: float | None = None) -> JobInfo:
        """Block until the job finishes (in this process), or poll the database for another's."""
        event = self._done_events.get(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        if event is not None:
            event.wait(timeout)
            return self.get(job_id)
        while True:
            info = self.get(job_id)
            if info.finished_state or (deadline is not None and time.monotonic() >= deadline):
                return info
            time.sleep(0.2)

    def subscribe(self, job_id: str, callback: Callable[[JobInfo], None]) -> Callable[[], None]:
        """Call ``callback(JobInfo)`` on every progress report and state change of a job in this
        process. Returns a function that unsubscribes."""
        with self._lock:
            self._listeners.setdefault(job_id, []).append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners.get(job_id, []):
                    self._listeners[job_id].remove(callback)

        return unsubscribe

    def checkpoint_dir(self, job_id: str) -> Path:
        return self.checkpoints_dir / job_id

    def close(self, wait: bool = False) -> None:
        """Stop accepting jobs. Unless ``wait``, running jobs are stopped at their next check and
        recorded as ``interrupted`` (resumable), and queued ones stay for ``resume``."""
        if not wait:
            self._closing = True
            for handle in list(self._handles.values()):
                handle._cancel.set()
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
        if not wait:
            with self._db() as db:
                db.execute(
                    "UPDATE jobs SET state=?, error=?, updated=? WHERE state=? AND owner=?",
                    (JobState.interrupted.value, "interrupted: the server stopped", time.time(),
                     JobState.queued.value, self.owner),
                )

    # -- running -------------------------------------------------------------------------------
    def _start(self, job_id: str, resumed: bool) -> None:
        self._done_events[job_id] = threading.Event()
        self._pool.submit(self._run, job_id, resumed)

    def _run(self, job_id: str, resumed: bool) -> None:
        try:
            info = self.get(job_id)
            if info.state != JobState.queued:  # cancelled while queued
                return
            ckpt = self.checkpoint_dir(job_id)
            ckpt.mkdir(parents=True, exist_ok=True)
            handle = JobHandle(self, info, ckpt, resumed)
            self._handles[job_id] = handle
            now = time.time()
            self._update(job_id, state=JobState.running.value, started=now, attempts=info.attempts + 1, owner=self.owner)
            self._notify(job_id, None)
            try:
                result = (self._fns.get(job_id) or self._resolve(info.kind))(handle)
                if result is not None:
                    json.dumps(result, default=str)
                state, error, tb = JobState.succeeded, None, None
            except JobCancelled:
                state, result, error, tb = JobState.cancelled, None, "cancelled", None
            except BaseException as exc:  # noqa: BLE001 - a job's failure is recorded, never raised
                if handle._cancel.is_set() or handle.cancelled:
                    state, result, error, tb = JobState.cancelled, None, "cancelled", None
                else:
                    state, result, tb = JobState.failed, None, traceback.format_exc()
                    error = str(exc) if isinstance(exc, AdaptRankError) else f"{type(exc).__name__}: {exc}"
                    log.error("job %s (%s) failed: %s", job_id, info.kind, error)
            if state == JobState.cancelled and self._closing:
                state, error = JobState.interrupted, "interrupted: the server stopped"
            last = handle._progress  # the newest report, which the throttle may have held back
            self._update(
                job_id,
                done=last.done,
                total=last.total,
                message=last.message,
                state=state.value,
                result=json.dumps(result, default=str) if result is not None else None,
                error=error,
                traceback=tb,
                finished=time.time(),
            )
            if state == JobState.succeeded and not self.keep_checkpoints:
                shutil.rmtree(ckpt, ignore_errors=True)
        except Exception:  # noqa: BLE001 - e.g. the database vanished (tests' temp dirs)
            log.exception("job runner for %s crashed", job_id)
        finally:
            self._handles.pop(job_id, None)
            self._fns.pop(job_id, None)
            self._finish_notify(job_id)

    def _finish_notify(self, job_id: str) -> None:
        self._notify(job_id, None)
        event = self._done_events.get(job_id)
        if event is not None:
            event.set()

    def _notify(self, job_id: str, progress: JobProgress | None) -> None:
        with self._lock:
            listeners = list(self._listeners.get(job_id, []))
        if not listeners:
            return
        try:
            info = self.get(job_id)
        except Exception:  # noqa: BLE001
            return
        if progress is not None:
            info.progress = progress
        for callback in listeners:
            try:
                callback(info)
            except Exception:  # noqa: BLE001 - a broken listener must not kill the job
                log.exception("job listener failed")

    # -- database ------------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        return closing_conn(conn)

    def _update(self, job_id: str, **fields: Any) -> None:
        fields["updated"] = time.time()
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._db() as db:
            db.execute(f"UPDATE jobs SET {cols} WHERE id=?", (*fields.values(), job_id))

    def _cancel_requested(self, job_id: str) -> bool:
        with self._db() as db:
            row = db.execute("SELECT cancel_requested FROM jobs WHERE id=?", (job_id,)).fetchone()
        return bool(row and row[0])

    def _mark_orphans_interrupted(self) -> None:
        """Jobs left running/queued by a process that no longer exists become ``interrupted``."""
        host = socket.gethostname()
        with self._db() as db:
            rows = db.execute(
                "SELECT id, owner FROM jobs WHERE state IN (?, ?)", (JobState.running.value, JobState.queued.value)
            ).fetchall()
            for job_id, owner in rows:
                o_host, _, o_pid = (owner or "").rpartition(":")
                if o_host == host and o_pid.isdigit() and _pid_alive(int(o_pid)):
                    continue  # a live process on this host (maybe this one) owns it
                if o_host != host and o_host:
                    continue  # another host's job: that host decides
                db.execute(
                    "UPDATE jobs SET state=?, error=?, updated=? WHERE id=?",
                    (JobState.interrupted.value, "interrupted: the process running it stopped", time.time(), job_id),
                )


class closing_conn(closing):  # noqa: N801 - a context manager, named like contextlib.closing
    """``with`` yields the connection and closes it (sqlite3's own context manager only commits)."""

    def __enter__(self) -> sqlite3.Connection:
        return self.thing


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _info(row: sqlite3.Row) -> JobInfo:
    return JobInfo(
        id=row["id"],
        kind=row["kind"],
        state=JobState(row["state"]),
        params=json.loads(row["params"]),
        progress=JobProgress(done=row["done"], total=row["total"], message=row["message"] or ""),
        result=json.loads(row["result"]) if row["result"] else None,
        error=row["error"],
        created=row["created"],
        started=row["started"],
        finished=row["finished"],
        updated=row["updated"],
        attempts=row["attempts"],
        cancel_requested=bool(row["cancel_requested"]),
    )
