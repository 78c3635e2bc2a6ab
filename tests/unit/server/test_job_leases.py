"""Job leases for several replicas on one jobs database: a job whose owner stops renewing
its lease is reported interrupted by whoever looks, a live owner keeps it running, exactly one of
two racing replicas resumes it, and an old database without the lease column keeps working.

Managers pose as replicas on different hosts (``owner="hostA:1"``): they share one database file,
as replicas share one ``ADAPTRANK_HOME``. Leases are a fraction of a second so each test takes ~1-3 s.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest

from adaptrank.core.errors import InputError
from adaptrank.server.jobs import JobManager, JobState

pytestmark = pytest.mark.timeout(60)

LEASE = 0.6


@pytest.fixture
def managers(settings):
    made: list[JobManager] = []

    def make(owner: str, lease: float = LEASE) -> JobManager:
        m = JobManager(settings, owner=owner, lease_seconds=lease)
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


def blocking(gate: threading.Event, started: threading.Event | None = None, result: dict | None = None):
    def fn(h):
        if started is not None:
            started.set()
        while not gate.wait(0.02):
            h.check_cancelled()
        return result or {"ok": True}

    return fn


def pause_renewals(m: JobManager) -> None:
    """The owner stops renewing, as if its host froze or died (its job thread is still there)."""
    m._renew_leases = lambda: None  # type: ignore[method-assign]


def resume_renewals(m: JobManager) -> None:
    del m._renew_leases


def start_blocking(m: JobManager):
    """A job on ``m`` that runs until the returned gate is set; returns once it is running."""
    gate, started = threading.Event(), threading.Event()
    m.register("block", blocking(gate, started))
    job = m.submit("block")
    assert started.wait(5)
    return job, gate


def wait_state(m: JobManager, job_id: str, state: JobState, timeout: float = 10) -> float:
    t0 = time.monotonic()
    while m.get(job_id).state != state:
        assert time.monotonic() - t0 < timeout, f"{job_id} never became {state.value}: {m.get(job_id)}"
        time.sleep(0.02)
    return time.monotonic() - t0


def test_renewal_keeps_a_live_job_running_for_other_replicas(managers):
    a, b = managers("hostA:1"), managers("hostB:2")
    job, gate = start_blocking(a)
    deadline = time.monotonic() + 4 * LEASE  # several leases long
    while time.monotonic() < deadline:
        seen = b.get(job.id)
        assert seen.state == JobState.running and seen.owner == "hostA:1", seen
        assert [j.id for j in b.list(state="running")] == [job.id]
        time.sleep(0.05)
    assert b.get(job.id).lease_until > time.time()  # renewed, not just started
    gate.set()
    assert a.wait(job.id, timeout=10).state == JobState.succeeded
    assert b.get(job.id).lease_until is None  # a finished job holds no lease


def test_an_expired_lease_is_reported_interrupted_by_whoever_looks(managers):
    a, b = managers("hostA:1"), managers("hostB:2")
    job, gate = start_blocking(a)
    pause_renewals(a)  # host A dies (no process on this host to check: only the lease tells)
    took = wait_state(b, job.id, JobState.interrupted)
    assert took <= 2 * LEASE
    info = b.get(job.id)
    assert "hostA:1 stopped renewing its lease" in info.error
    assert [j.id for j in b.list(state="interrupted")] == [job.id] and b.list(state="running") == []
    # A third replica starting now sees the same; nothing about it flips back
    assert managers("hostC:3").get(job.id).state == JobState.interrupted
    gate.set()


def test_list_reports_expiry_too(managers, settings):
    b = managers("hostB:2")
    now = time.time()
    with sqlite3.connect(settings.jobs_db) as db:
        db.execute(
            "INSERT INTO jobs (id, kind, state, params, created, updated, owner, lease_until) VALUES (?,?,?,?,?,?,?,?)",
            ("gone", "x", "running", "{}", now, now, "deadhost:7", now - 1),
        )
        db.execute(
            "INSERT INTO jobs (id, kind, state, params, created, updated, owner, lease_until) VALUES (?,?,?,?,?,?,?,?)",
            ("alive", "x", "running", "{}", now, now, "livehost:8", now + 60),
        )
    states = {j.id: j.state for j in b.list()}
    assert states == {"gone": JobState.interrupted, "alive": JobState.running}


@pytest.mark.parametrize("round_", range(5))
def test_two_replicas_resuming_at_once_exactly_one_wins(managers, settings, round_):
    replicas = [managers("hostB:2"), managers("hostC:3")]
    now = time.time()
    with sqlite3.connect(settings.jobs_db) as db:  # host A died mid-job: its lease ran out
        db.execute(
            "INSERT INTO jobs (id, kind, state, params, created, updated, owner, lease_until, attempts, started) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)",
            ("orphan", "work", "running", json.dumps({"n": 1}), now, now, "hostA:1", now - 1, 1, now),
        )
    runs: list[str] = []
    gate = threading.Event()
    for m in replicas:

        def fn(h, owner=m.owner):
            runs.append(owner)
            assert h.resumed
            gate.wait(10)
            return {"by": owner}

        m.register("work", fn)
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def resume(m: JobManager) -> None:
        barrier.wait(5)
        try:
            outcomes[m.owner] = m.resume("orphan")
        except InputError as exc:
            outcomes[m.owner] = exc

    threads = [threading.Thread(target=resume, args=(m,)) for m in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    won = [o for o, r in outcomes.items() if not isinstance(r, Exception)]
    lost = [r for r in outcomes.values() if isinstance(r, Exception)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert str(lost[0]) == f"job_id: job orphan is already being resumed by {won[0]}"
    gate.set()
    winner = next(m for m in replicas if m.owner == won[0])
    done = winner.wait("orphan", timeout=10)
    assert done.state == JobState.succeeded and done.result == {"by": won[0]} and done.attempts == 2
    assert runs == won  # it ran once, on the winner
    with pytest.raises(InputError, match="is succeeded; only"):
        replicas[0].resume("orphan")


def test_an_owner_whose_job_was_taken_over_stops_and_writes_nothing(managers):
    a, b = managers("hostA:1"), managers("hostB:2")
    gate_a, started_a = threading.Event(), threading.Event()
    a.register("work", blocking(gate_a, started_a, {"by": "A"}))
    b.register("work", lambda h: {"by": "B"})
    job = a.submit("work")
    assert started_a.wait(5)
    pause_renewals(a)  # A froze (say, a long GC pause or a suspended VM) ...
    wait_state(b, job.id, JobState.interrupted)
    assert b.wait(b.resume(job.id).id, timeout=10).result == {"by": "B"}
    resume_renewals(a)  # ... and wakes up: its next renewal finds the job taken over and stops it
    assert a.wait(job.id, timeout=10).state == JobState.succeeded
    time.sleep(LEASE)
    final = b.get(job.id)
    assert final.state == JobState.succeeded and final.result == {"by": "B"} and final.owner == "hostB:2"
    assert job.id not in a._handles and job.id not in a._live


def test_a_lapsed_lease_nobody_resumed_is_taken_back(managers):
    a, b = managers("hostA:1"), managers("hostB:2")
    job, gate = start_blocking(a)
    pause_renewals(a)
    wait_state(b, job.id, JobState.interrupted)
    resume_renewals(a)
    wait_state(b, job.id, JobState.running)  # the owner is alive after all: it runs on
    assert b.get(job.id).error is None
    gate.set()
    assert b.wait(job.id, timeout=10).state == JobState.succeeded


def test_a_database_without_the_lease_column_is_migrated_on_open(settings):
    settings.jobs_db.parent.mkdir(parents=True, exist_ok=True)
    now = time.time()
    with sqlite3.connect(settings.jobs_db) as db:  # the schema of the release before leases
        db.executescript("""
            CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, params TEXT NOT NULL,
                done REAL NOT NULL DEFAULT 0, total REAL, message TEXT NOT NULL DEFAULT '', result TEXT, error TEXT,
                traceback TEXT, created REAL NOT NULL, started REAL, finished REAL, updated REAL NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0, cancel_requested INTEGER NOT NULL DEFAULT 0, owner TEXT);
            CREATE INDEX jobs_created ON jobs (created);
        """)
        db.execute(
            "INSERT INTO jobs (id, kind, state, params, created, updated, owner, result) VALUES (?,?,?,?,?,?,?,?)",
            ("old", "x", "succeeded", "{}", now, now, "somehost:1", json.dumps({"n": 1})),
        )
        db.execute(
            "INSERT INTO jobs (id, kind, state, params, created, updated, owner) VALUES (?,?,?,?,?,?,?)",
            ("legacy", "x", "running", "{}", now, now, "otherhost:1"),
        )
    managers = [JobManager(settings, lease_seconds=LEASE), JobManager(settings, lease_seconds=LEASE)]  # opened twice
    try:
        m = managers[0]
        assert m.get("old").result == {"n": 1} and m.get("old").lease_until is None
        time.sleep(LEASE)
        assert m.get("legacy").state == JobState.running  # no lease recorded: left to its host, as before
        m.register("add", lambda h: {"sum": 3})
        assert m.wait(m.submit("add").id, timeout=10).result == {"sum": 3}
        with sqlite3.connect(settings.jobs_db) as db:
            cols = [r[1] for r in db.execute("PRAGMA table_info(jobs)")]
            assert cols.count("lease_until") == 1
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        for m in managers:
            m.close()
