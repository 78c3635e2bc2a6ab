"""What a job is, as every view of it sees it: its state, progress and status record."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, Field


class JobState(str, Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    interrupted = "interrupted"


FINISHED = {JobState.succeeded, JobState.failed, JobState.cancelled, JobState.interrupted}
RESUMABLE = {JobState.interrupted, JobState.failed, JobState.cancelled}
LIVE = (JobState.queued.value, JobState.running.value)


class JobProgress(BaseModel):
    done: float = 0
    total: float | None = None
    message: str = ""


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
    owner: str | None = Field(None, description="host:pid of the process that runs (or last ran) the job")
    lease_until: float | None = Field(
        None, description="while queued or running: the owner's lease ends then unless renewed"
    )

    @property
    def finished_state(self) -> bool:
        return self.state in FINISHED
