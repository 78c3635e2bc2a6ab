"""Background jobs recorded in SQLite: generation, fine-tuning, evaluation, adaptation, ingest.

A job is a function ``fn(handle) -> dict | None`` looked up by *kind* (``"generate"``,
``"finetune"``) in :data:`.kinds.JOB_KINDS`, so a job can be resumed by a new
process after a restart. The function reads its parameters from ``handle.params``, reports
``handle.progress(done, total, message)``, stops when ``handle.cancelled`` turns true (raising
:class:`~adaptrank.core.errors.Cancelled`, or ``handle.check_cancelled()``), and keeps whatever lets
it resume in ``handle.checkpoint_dir``. Its return value (JSON-able) becomes the job's ``result``.

States: ``queued -> running -> succeeded | failed | cancelled``. A job found ``running`` (or
``queued``) whose owning process is gone becomes ``interrupted``; ``resume(id)`` runs it again with
the same parameters and checkpoint directory (``handle.resumed`` is True).

Several replicas may share one database (one ``ADAPTRANK_HOME``). A job's owner (``host:pid``)
holds a lease (``lease_until``) that a daemon thread renews every third of
``settings.job_lease_seconds``. A live job whose lease ran out (its process or its whole host died)
is reported ``interrupted`` by whichever replica looks at it (``get``, ``list``), and any replica
may resume it; the resume is one conditional UPDATE, so of two replicas resuming at once exactly
one wins and the other gets "job X is already being resumed by host:pid". An owner that finds its
job taken over stops it at its next check and writes nothing more for it; one that finds its lease
merely lapsed (a long pause, nobody resumed it) takes the job back.

One progress stream drives every view of a job: ``subscribe(id, callback)`` delivers each update
in-process (the CLI's progress bar, MCP progress notifications), and the same figures go to the
database (throttled) for ``job_status`` polling from other processes. Cancellation also crosses
processes: ``cancel`` sets a flag in the database that the running handle checks.

Usage::

    jobs = JobManager(settings)
    info = jobs.submit("generate", {"source": "beir", ...})
    jobs.subscribe(info.id, lambda job: print(job.progress))
    jobs.wait(info.id)

The package: :mod:`.models` (state, progress, status), :mod:`.store` (the SQLite table),
:mod:`.handle` (what a running job sees), :mod:`.manager` (workers, leases, listeners),
:mod:`.kinds` (every job kind and its adapter).
"""

from adaptrank.server.jobs.handle import JobHandle
from adaptrank.server.jobs.kinds import JOB_KINDS, JobFn
from adaptrank.server.jobs.manager import JobManager
from adaptrank.server.jobs.models import FINISHED, RESUMABLE, JobInfo, JobProgress, JobState

__all__ = [
    "FINISHED",
    "JOB_KINDS",
    "RESUMABLE",
    "JobFn",
    "JobHandle",
    "JobInfo",
    "JobManager",
    "JobProgress",
    "JobState",
]
