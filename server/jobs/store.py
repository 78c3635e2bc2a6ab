"""The jobs table in one SQLite file (``settings.jobs_db``), shared by every process and replica.

A connection is opened per operation (sqlite3 connections do not cross threads) in autocommit
mode; WAL lets readers in other processes poll while a job writes its progress. Every write that
races another replica is one conditional UPDATE (see :mod:`.manager`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from adaptrank.server.jobs.models import LIVE, RESUMABLE, JobInfo, JobProgress, JobState

SCHEMA = """
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
    owner TEXT,
    lease_until REAL
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created);
"""

#: columns added after the first release: (name, type), added to older databases on open
ADDED_COLUMNS = [("lease_until", "REAL")]

#: SQL conditions on a job's state
IN_RESUMABLE = "state IN ({})".format(", ".join(f"'{s.value}'" for s in sorted(RESUMABLE, key=lambda s: s.value)))
IN_LIVE = f"state IN ('{LIVE[0]}', '{LIVE[1]}')"


class JobStore:
    """The jobs table: created (or migrated) on open; ``connect()`` for one operation."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.executescript(SCHEMA)
            migrate(db)

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        return closing_conn(conn)

    def update_owned(self, job_id: str, owner: str, only_state: str | None = None, **fields: Any) -> bool:
        """Update a job only while ``owner`` owns it (and, with ``only_state``, only in that
        state); False when another replica took it over."""
        fields["updated"] = time.time()
        cols = ", ".join(f"{k}=?" for k in fields)
        sql, args = f"UPDATE jobs SET {cols} WHERE id=? AND owner=?", [*fields.values(), job_id, owner]
        if only_state is not None:
            sql, args = sql + " AND state=?", [*args, only_state]
        with self.connect() as db:
            return db.execute(sql, args).rowcount == 1

    def cancel_requested(self, job_id: str) -> bool:
        with self.connect() as db:
            row = db.execute("SELECT cancel_requested FROM jobs WHERE id=?", (job_id,)).fetchone()
        return bool(row and row[0])

    @staticmethod
    def interrupt_dead_local(db: sqlite3.Connection, host: str) -> None:
        """Jobs left running/queued by a process of ``host`` that no longer exists become
        ``interrupted``; other hosts' jobs wait for their lease to run out."""
        rows = db.execute(
            "SELECT id, owner FROM jobs WHERE state IN (?, ?)", (JobState.running.value, JobState.queued.value)
        ).fetchall()
        for job_id, owner in rows:
            o_host, _, o_pid = (owner or "").rpartition(":")
            if o_host == host and o_pid.isdigit() and pid_alive(int(o_pid)):
                continue  # a live process on this host (maybe this one) owns it
            if o_host != host and o_host:
                continue  # another host's job: that host decides
            db.execute(
                "UPDATE jobs SET state=?, error=?, updated=? WHERE id=?",
                (JobState.interrupted.value, "interrupted: the process running it stopped", time.time(), job_id),
            )


class closing_conn(closing):
    """``with`` yields the connection and closes it (sqlite3's own context manager only commits)."""

    def __enter__(self) -> sqlite3.Connection:
        return self.thing


def migrate(db: sqlite3.Connection) -> None:
    """Add the columns a database from an older release lacks (two processes may race here)."""
    have = {r[1] for r in db.execute("PRAGMA table_info(jobs)").fetchall()}
    for name, kind in ADDED_COLUMNS:
        if name not in have:
            try:
                db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):
                    raise


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def row_to_info(row: sqlite3.Row) -> JobInfo:
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
        owner=row["owner"],
        lease_until=row["lease_until"],
    )
