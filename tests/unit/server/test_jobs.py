"""Background jobs: states, progress stream, cancellation, orphan detection and resume."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest

from adaptrank.core.errors import InputError, NotFoundError
from adaptrank.server.jobs import JobManager, JobState


@pytest.fixture
def jobs(settings):
    manager = JobManager(settings)
    yield manager
    manager.close()


def test_job_runs_reports_progress_and_result(jobs):
    def work(h):
        for i in range(5):
            h.progress(i + 1, 5, f"step {i + 1}")
        return {"sum": sum(h.params["xs"])}

    jobs.register("work", work)
    seen = []
    gate = threading.Event()

    def gated(h):
        gate.wait(5)
        return work(h)

    jobs.register("gated", gated)
    info = jobs.submit("gated", {"xs": [1, 2, 3]})
    jobs.subscribe(info.id, lambda job: seen.append((job.state, job.progress.done, job.progress.message)))
    gate.set()
    done = jobs.wait(info.id, timeout=10)
    assert done.state == JobState.succeeded and done.result == {"sum": 6}
    assert done.progress.done == 5 and done.progress.total == 5 and done.progress.message == "step 5"
    assert [d for s, d, _ in seen if s == JobState.running and d] == [1, 2, 3, 4, 5]
    assert seen[-1][0] == JobState.succeeded
    assert done.started and done.finished and done.attempts == 1
    assert jobs.list()[0].id == info.id and jobs.list(kind="other") == []
    assert not jobs.checkpoint_dir(info.id).exists()  # cleaned after success


def test_failure_is_recorded_not_raised(jobs):
    def boom(h):
        raise InputError("source", "is empty")

    jobs.register("boom", boom)
    info = jobs.wait(jobs.submit("boom").id, timeout=10)
    assert info.state == JobState.failed and info.error == "source: is empty"
    with pytest.raises(InputError, match="unknown job kind"):
        jobs.submit("nope")
    with pytest.raises(NotFoundError):
        jobs.get("missing")


def test_cancel_running_and_queued(jobs):
    started = threading.Event()

    def loop(h):
        started.set()
        while True:
            h.check_cancelled()
            time.sleep(0.01)

    jobs.register("loop", loop)
    running = jobs.submit("loop")
    queued = jobs.submit("loop")  # one worker: waits
    assert started.wait(5)
    assert jobs.get(queued.id).state == JobState.queued
    assert jobs.cancel(queued.id).state == JobState.cancelled
    jobs.cancel(running.id)
    assert jobs.wait(running.id, timeout=10).state == JobState.cancelled
    assert jobs.get(queued.id).started is None


def test_cancel_from_another_manager_crosses_the_database(settings, jobs):
    started = threading.Event()

    def loop(h):
        started.set()
        while not h.cancelled:
            time.sleep(0.02)
        h.check_cancelled()

    jobs.register("loop", loop)
    info = jobs.submit("loop")
    assert started.wait(5)
    other = JobManager(settings)  # e.g. `adaptrank jobs cancel` in another process
    assert other.get(info.id).state == JobState.running  # a live owner is not an orphan
    other.cancel(info.id)
    assert jobs.wait(info.id, timeout=10).state == JobState.cancelled
    other.close()


def test_orphans_become_interrupted_and_resume_with_checkpoint(settings):
    runs = []

    def resumable(h):
        marker = h.checkpoint_dir / "first_half"
        runs.append((h.resumed, marker.exists()))
        marker.write_text("done")
        return {"resumed": h.resumed}

    # A row left 'running' by a process that no longer exists.
    first = JobManager(settings)
    first.close()
    settings.jobs_db.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(settings.jobs_db) as db:
        db.execute(
            "INSERT INTO jobs (id, kind, state, params, created, updated, owner) VALUES (?,?,?,?,?,?,?)",
            (
                "deadjob",
                "resumable",
                "running",
                json.dumps({"a": 1}),
                time.time(),
                time.time(),
                f"{__import__('socket').gethostname()}:999999",
            ),
        )
    (settings.home / "jobs" / "deadjob").mkdir(parents=True)
    (settings.home / "jobs" / "deadjob" / "first_half").write_text("done")
    jobs = JobManager(settings)
    jobs.register("resumable", resumable)
    assert jobs.get("deadjob").state == JobState.interrupted
    info = jobs.wait(jobs.resume("deadjob").id, timeout=10)
    assert info.state == JobState.succeeded and info.result == {"resumed": True}
    assert runs == [(True, True)] and info.params == {"a": 1}
    with pytest.raises(InputError, match="only"):
        jobs.resume("deadjob")  # succeeded jobs do not resume
    jobs.close()
