"""Every job kind in one table, :data:`JOB_KINDS`, with the adapter that runs it.

An adapter reads the job's parameters from ``handle.params`` and calls the part that does the work
with plain callbacks: ``progress=handle.progress`` and ``cancelled=lambda: handle.cancelled``. The
parts (training, core) know nothing of jobs; they raise :class:`~adaptrank.core.errors.Cancelled`
when ``cancelled()`` turns true, and the manager records the job as ``cancelled``.

A job's private parameters (``_restrict_paths``: keep paths inside the allowed roots, set by MCP
tools; ``_report``: the CLI's ``adapt --report``) are read here and never reach the parts.

The parts are imported inside the adapters: importing this table (the job tools, ``adaptrank
--help``) must not load the training stack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from adaptrank.core.paths import allowed_roots, check_allowed_path
from adaptrank.core.settings import Settings, get_settings

if TYPE_CHECKING:
    from adaptrank.server.jobs.handle import JobHandle

JobFn = Callable[["JobHandle"], "dict[str, Any] | None"]


def _settings(handle: JobHandle) -> Settings:
    return getattr(handle.manager, "settings", None) or get_settings()


def _cancelled(handle: JobHandle) -> Callable[[], bool]:
    return lambda: bool(handle.cancelled)


def generate_job(handle: JobHandle, *, llm: Any = None, judge_llm: Any = None, docstore: Any = None) -> dict[str, Any]:
    """``generate``: a training dataset (``training.generate``). ``llm``/``docstore``: objects a
    caller shares with this one run (an MCP sampling LLM, the server's open Chroma store)."""
    from adaptrank.training.generate import GenerateParams, generate_dataset

    raw = dict(handle.params)
    restrict = bool(raw.pop("_restrict_paths", True))
    ref = generate_dataset(
        GenerateParams.model_validate(raw),
        _settings(handle),
        llm=llm,
        judge_llm=judge_llm,
        progress=handle.progress,
        cancelled=_cancelled(handle),
        checkpoint_dir=handle.checkpoint_dir,
        docstore=docstore,
        restrict_paths=restrict,
    )
    return {
        "dataset": ref.name,
        "version": ref.version,
        "path": str(ref.path),
        "counts": ref.card.counts,
        "skipped": ref.card.skipped,
        "seconds": ref.card.seconds,
    }


def finetune_job(handle: JobHandle) -> dict[str, Any]:
    """``finetune``: a new model version, promoted only if it wins (``training.finetune``)."""
    from adaptrank.training.finetune import finetune, parse_params

    result = finetune(
        parse_params(handle.params), _settings(handle), progress=handle.progress, cancelled=_cancelled(handle)
    )
    return result.model_dump(mode="json")


def evaluate_job(handle: JobHandle) -> dict[str, Any]:
    """``evaluate``: ``evaluate_beir`` on a BEIR folder inside the allowed roots."""
    from adaptrank.training.evaluate import EvaluateParams, evaluate_beir
    from adaptrank.training.params import parse

    p = parse(EvaluateParams, handle.params)
    settings = _settings(handle)
    report = evaluate_beir(
        check_allowed_path(settings, p.path),
        p.models,
        first_stage=p.first_stage,
        depth=p.depth,
        max_queries=p.max_queries,
        seed=p.seed,
        settings=settings,
        progress=handle.progress,
        cancelled=_cancelled(handle),
        roots=allowed_roots(settings),
    )
    return report.model_dump(mode="json")


def adapt_job(handle: JobHandle) -> dict[str, Any]:
    """``adapt``: generate, fine-tune, evaluate, promote (``training.adapt``)."""
    from adaptrank.core.paths import inside_roots
    from adaptrank.training.adapt import AdaptParams, adapt

    settings = _settings(handle)
    raw = dict(handle.params)
    restrict = bool(raw.pop("_restrict_paths", True))
    report = raw.pop("_report", None)  # the CLI's --report (an absolute path)
    if report and restrict:
        report = inside_roots(report, allowed_roots(settings), "report")
    result = adapt(
        AdaptParams.model_validate(raw),
        settings,
        progress=handle.progress,
        cancelled=_cancelled(handle),
        checkpoint_dir=handle.checkpoint_dir,
        restrict_paths=restrict,
        report=report,
    )
    return result.model_dump(mode="json")


def ingest_job(handle: JobHandle) -> dict[str, Any]:
    """``ingest``: the ``ingest_documents`` parameters. Resuming is re-running: ingest skips
    documents it already stored unchanged."""
    from adaptrank.core.docstore import DocStore
    from adaptrank.core.ingest import ingest

    params = dict(handle.params)
    settings = _settings(handle)
    path = check_allowed_path(settings, params.pop("path"))

    def progress(done: int, total: int) -> None:
        handle.progress(done, total, f"embedded {done}/{total} chunks")
        handle.check_cancelled()

    return ingest(
        DocStore(settings), path, params.pop("collection"), progress=progress, roots=allowed_roots(settings), **params
    ).to_dict()


#: job kind -> its adapter: every kind, in this one table, so that any process (a restarted
#: server, the CLI) can resume any job.
JOB_KINDS: dict[str, JobFn] = {
    "generate": generate_job,
    "finetune": finetune_job,
    "evaluate": evaluate_job,
    "adapt": adapt_job,
    "ingest": ingest_job,
}
