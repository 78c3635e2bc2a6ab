"""``JobManager``: runs job functions in worker threads, records them in the jobs table, renews
their leases and fans their progress out to listeners (see the package docstring).

Over 400 lines: the lease protocol (claim, renew, expire, take back) and the run loop share the
manager's locks and live-job set, so they stay in one class.
"""

from __future__ import annotations

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
from pathlib import Path
from typing import Any

from adaptrank.core.errors import AdaptRankError, Cancelled, InputError, NotFoundError
from adaptrank.core.settings import Settings
from adaptrank.server.jobs.handle import JobHandle
from adaptrank.server.jobs.kinds import JOB_KINDS, JobFn
from adaptrank.server.jobs.models import LIVE, RESUMABLE, JobInfo, JobProgress, JobState
from adaptrank.server.jobs.store import IN_LIVE, IN_RESUMABLE, JobStore, row_to_info

log = logging.getLogger(__name__)


class JobManager:
    """Runs job functions in worker threads and records them in ``settings.jobs_db``.

    ``max_workers`` jobs run at once (default 1: on a small machine, two trainings at once only
    slow each other down); the rest wait in state ``queued``. ``lease_seconds`` (default
    ``settings.job_lease_seconds``) is how long a job stays ``running`` for other replicas after
    its owner's last renewal.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        db_path: Path | None = None,
        checkpoints_dir: Path | None = None,
        max_workers: int = 1,
        keep_checkpoints: bool = False,
        lease_seconds: float | None = None,
        owner: str | None = None,
    ) -> None:
        if settings is None and db_path is None:
            from adaptrank.core.settings import get_settings

            settings = get_settings()
        self.settings = settings
        self.db_path = Path(db_path or settings.jobs_db)  # type: ignore[union-attr]
        self.checkpoints_dir = Path(checkpoints_dir or self.db_path.parent / "jobs")
        self.keep_checkpoints = keep_checkpoints
        if lease_seconds is None:
            lease_seconds = settings.job_lease_seconds if settings is not None else 30.0
        self.lease_seconds = float(lease_seconds)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"  # tests pose as other hosts
        self._lock = threading.RLock()
        self._kinds: dict[str, JobFn] = dict(JOB_KINDS)
        self._listeners: dict[str, list[Callable[[JobInfo], None]]] = {}
        self._handles: dict[str, JobHandle] = {}
        self._fns: dict[str, JobFn] = {}  # per-job function overrides (submit(fn=...))
        self._done_events: dict[str, threading.Event] = {}
        self._live: set[str] = set()  # jobs this manager has queued or running: their leases are renewed
        self._heartbeat: threading.Thread | None = None
        self._heartbeat_stop = threading.Event()
        self._closing = False
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="adaptrank-job")
        self.store = JobStore(self.db_path)
        self._mark_orphans_interrupted()

    # -- registration --------------------------------------------------------------------------
    def register(self, kind: str, fn: JobFn) -> None:
        """Add (or replace) a job kind for this manager."""
        self._kinds[kind] = fn

    def _resolve(self, kind: str) -> JobFn:
        target = self._kinds.get(kind)
        if target is None:
            raise InputError("kind", f"unknown job kind {kind!r} (known: {sorted(self._kinds)})")
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
                "INSERT INTO jobs (id, kind, state, params, created, updated, owner, lease_until) VALUES (?,?,?,?,?,?,?,?)",
                (
                    job_id,
                    kind,
                    JobState.queued.value,
                    json.dumps(params),
                    now,
                    now,
                    self.owner,
                    now + self.lease_seconds,
                ),
            )
        if fn is not None:
            self._fns[job_id] = fn
        self._start(job_id, resumed=False)
        return self.get(job_id)

    def resume(self, job_id: str, *, fn: JobFn | None = None) -> JobInfo:
        """Run an interrupted, failed or cancelled job again from its checkpoint.

        Any replica may resume a job, once: the claim is one conditional UPDATE, so when two
        replicas (or two callers) resume the same job at once, one wins and the other gets
        ``InputError("job X is already being resumed by host:pid")``."""
        info = self.get(job_id)  # also turns a job whose owner's lease ran out into 'interrupted'
        if info.state not in RESUMABLE:
            raise self._not_resumable(info)
        if fn is None and job_id not in self._fns:
            self._resolve(info.kind)
        now = time.time()
        with self._db() as db:
            claimed = db.execute(
                "UPDATE jobs SET state=?, error=NULL, traceback=NULL, finished=NULL, cancel_requested=0, "
                f"owner=?, lease_until=?, updated=? WHERE id=? AND {IN_RESUMABLE}",
                (JobState.queued.value, self.owner, now + self.lease_seconds, now, job_id),
            ).rowcount
        if claimed != 1:
            raise self._not_resumable(self.get(job_id))
        if fn is not None:
            self._fns[job_id] = fn
        self._start(job_id, resumed=True)
        return self.get(job_id)

    @staticmethod
    def _not_resumable(info: JobInfo) -> InputError:
        state = info.state.value
        # queued again after it ran, or running its second attempt: someone resumed it
        if (state == JobState.queued.value and info.attempts >= 1) or (
            state == JobState.running.value and info.attempts >= 2
        ):
            return InputError("job_id", f"job {info.id} is already being resumed by {info.owner}")
        where = f" on {info.owner}" if state in LIVE and info.owner else ""
        return InputError(
            "job_id", f"job {info.id} is {state}{where}; only {sorted(s.value for s in RESUMABLE)} jobs resume"
        )

    def get(self, job_id: str) -> JobInfo:
        """The job's status; a queued or running job whose owner's lease ran out is reported (and
        recorded) ``interrupted``."""
        with self._db() as db:
            row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is not None and self._stale(row, time.time()):
                self._expire(db, [row])
                row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError("job_id", f"no job {job_id!r}")
        return row_to_info(row)

    def list(self, kind: str | None = None, state: str | None = None, limit: int = 50) -> list[JobInfo]:
        """Newest first."""
        sql, args = "SELECT * FROM jobs WHERE 1=1", []
        if kind:
            sql, args = sql + " AND kind=?", [*args, kind]
        if state:
            sql, args = sql + " AND state=?", [*args, state]
        with self._db() as db:
            self._expire_stale(db)
            rows = db.execute(sql + " ORDER BY created DESC LIMIT ?", (*args, int(limit))).fetchall()
        return [row_to_info(r) for r in rows]

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
        self._heartbeat_stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=10)
        with self._lock:
            self._live.clear()
        if not wait:
            with self._db() as db:
                db.execute(
                    "UPDATE jobs SET state=?, error=?, updated=? WHERE state=? AND owner=?",
                    (
                        JobState.interrupted.value,
                        "interrupted: the server stopped",
                        time.time(),
                        JobState.queued.value,
                        self.owner,
                    ),
                )

    # -- running -------------------------------------------------------------------------------
    def _start(self, job_id: str, resumed: bool) -> None:
        self._done_events[job_id] = threading.Event()
        with self._lock:
            self._live.add(job_id)
            if self._heartbeat is None and not self._heartbeat_stop.is_set():
                self._heartbeat = threading.Thread(target=self._heartbeat_loop, name="adaptrank-job-lease", daemon=True)
                self._heartbeat.start()
        self._pool.submit(self._run, job_id, resumed)

    def _run(self, job_id: str, resumed: bool) -> None:
        try:
            info = self.get(job_id)
            if info.state != JobState.queued or info.owner != self.owner:  # cancelled while queued, or taken over
                return
            ckpt = self.checkpoint_dir(job_id)
            handle = JobHandle(self, info, ckpt, resumed)
            now = time.time()
            if not self._update_owned(
                job_id,
                _only_state=JobState.queued.value,
                state=JobState.running.value,
                started=now,
                attempts=info.attempts + 1,
                lease_until=now + self.lease_seconds,
            ):
                return  # cancelled or taken over between the read and the claim
            ckpt.mkdir(parents=True, exist_ok=True)
            self._handles[job_id] = handle
            self._notify(job_id, None)
            try:
                result = (self._fns.get(job_id) or self._resolve(info.kind))(handle)
                if result is not None:
                    json.dumps(result, default=str)
                state, error, tb = JobState.succeeded, None, None
            except Cancelled:
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
            if handle._lost:
                log.warning(
                    "job %s was taken over by another replica; this run's outcome (%s) is dropped", job_id, state.value
                )
                return
            written = self._update_owned(
                job_id,
                done=last.done,
                total=last.total,
                message=last.message,
                state=state.value,
                result=json.dumps(result, default=str) if result is not None else None,
                error=error,
                traceback=tb,
                finished=time.time(),
                lease_until=None,
            )
            if not written:
                log.warning(
                    "job %s was taken over by another replica; this run's outcome (%s) is dropped", job_id, state.value
                )
            elif state == JobState.succeeded and not self.keep_checkpoints:
                shutil.rmtree(ckpt, ignore_errors=True)
        except Exception:
            log.exception("job runner for %s crashed", job_id)
        finally:
            with self._lock:
                self._live.discard(job_id)
            self._handles.pop(job_id, None)
            self._fns.pop(job_id, None)
            self._finish_notify(job_id)

    # -- leases --------------------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        while not self._heartbeat_stop.wait(self.lease_seconds / 3):
            try:
                self._renew_leases()
            except Exception:
                log.exception("could not renew job leases")

    def _renew_leases(self) -> None:
        """Extend the lease of every job this manager has queued or running. A job whose lease
        lapsed while nobody resumed it is taken back; one another replica resumed is stopped."""
        with self._lock:
            ids = list(self._live)
        if not ids:
            return
        now = time.time()
        until = now + self.lease_seconds
        with self._db() as db:
            for job_id in ids:
                if db.execute(
                    f"UPDATE jobs SET lease_until=? WHERE id=? AND owner=? AND {IN_LIVE}", (until, job_id, self.owner)
                ).rowcount:
                    continue
                handle = self._handles.get(job_id)
                state = JobState.running.value if handle is not None else JobState.queued.value
                if db.execute(
                    "UPDATE jobs SET state=?, error=NULL, lease_until=?, updated=? "
                    "WHERE id=? AND owner=? AND state=? AND finished IS NULL",
                    (state, until, now, job_id, self.owner, JobState.interrupted.value),
                ).rowcount:
                    log.warning(
                        "job %s: its lease had run out (this process paused?); nobody resumed it, so it runs on here",
                        job_id,
                    )
                    continue
                row = db.execute("SELECT state, owner FROM jobs WHERE id=?", (job_id,)).fetchone()
                if row is not None and row["owner"] == self.owner:
                    continue  # it just finished here (or this manager is closing)
                log.warning(
                    "job %s was taken over by %s (%s); stopping it here",
                    job_id,
                    row["owner"] if row else "nobody (deleted)",
                    row["state"] if row else "-",
                )
                with self._lock:
                    self._live.discard(job_id)
                if handle is not None:
                    handle._lost = True
                    handle._cancel.set()

    def _stale(self, row: sqlite3.Row, now: float) -> bool:
        """A queued or running job whose owner's lease ran out (never one this manager runs)."""
        lease = row["lease_until"]
        if row["state"] not in LIVE or lease is None or lease >= now:
            return False
        return not (row["owner"] == self.owner and row["id"] in self._live)

    def _expire_stale(self, db: sqlite3.Connection) -> None:
        now = time.time()
        rows = db.execute(
            f"SELECT id, state, owner, lease_until FROM jobs WHERE {IN_LIVE} AND lease_until < ?", (now,)
        ).fetchall()
        stale = [r for r in rows if self._stale(r, now)]
        if stale:
            self._expire(db, stale)

    def _expire(self, db: sqlite3.Connection, rows: list[sqlite3.Row]) -> None:
        """Mark jobs whose lease ran out ``interrupted``: conditional on the lease still being the
        expired one, so a renewal that lands first wins."""
        now = time.time()
        for row in rows:
            n = db.execute(
                f"UPDATE jobs SET state=?, error=?, updated=? WHERE id=? AND {IN_LIVE} AND owner IS ? AND lease_until=?",
                (
                    JobState.interrupted.value,
                    f"interrupted: its owner {row['owner']} stopped renewing its lease "
                    f"(expired {now - row['lease_until']:.0f} s ago; its process or host is gone)",
                    now,
                    row["id"],
                    row["owner"],
                    row["lease_until"],
                ),
            ).rowcount
            if n:
                log.warning(
                    "job %s: the lease of %s ran out; it is interrupted (resume_job continues it)",
                    row["id"],
                    row["owner"],
                )

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
            except Exception:
                log.exception("job listener failed")

    # -- database ------------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        return self.store.connect()

    def _update_owned(self, job_id: str, _only_state: str | None = None, **fields: Any) -> bool:
        """Update a job only while this manager owns it; False when another replica took it over."""
        return self.store.update_owned(job_id, self.owner, _only_state, **fields)

    def _mark_orphans_interrupted(self) -> None:
        """Jobs left running/queued by a dead process of this host become ``interrupted`` at once;
        other hosts' jobs when their lease runs out."""
        with self._db() as db:
            self._expire_stale(db)
            JobStore.interrupt_dead_local(db, socket.gethostname())
