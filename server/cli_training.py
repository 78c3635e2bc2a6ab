"""CLI commands ``adaptrank generate`` (training data, in the foreground with a progress bar),
``adaptrank jobs`` (list / status / cancel / resume background jobs) and ``adaptrank datasets``.

``generate`` runs as a job of the same SQLite job system the MCP tools use, so it checkpoints as
it goes: Ctrl-C (or a crash) leaves it ``cancelled``/``interrupted`` and ``adaptrank generate
--resume JOB`` continues without redoing finished documents. The job's progress stream drives
the bar. The CLI reads any local path its user can (the allowed-roots guard is for MCP callers).

Registered by ``server/cli.py`` (``COMMAND_MODULES``).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from adaptrank.server.cli import err, follow_job, make_settings, out, user_errors
from adaptrank.server.jobs import JOB_KINDS
from adaptrank.training.params import (
    ConsistencyDepth,
    MaxDocuments,
    MaxMinutes,
    Negatives,
    QueriesPerDocument,
    QueryLog,
    help_of,
    parse,
)

jobs_app = typer.Typer(
    help="Background jobs (generation, fine-tuning): list, status, cancel, resume.",
    no_args_is_help=False,
    invoke_without_command=True,
)


def register(app: typer.Typer) -> None:
    app.command()(generate)
    app.add_typer(jobs_app, name="jobs")
    app.command()(datasets)


def generate(
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="dataset name (under ADAPTRANK_HOME/datasets)")
    ] = None,
    source: Annotated[str | None, typer.Option(help="chroma | beir | folder")] = None,
    path: Annotated[str | None, typer.Option(help="BEIR folder (corpus.jsonl) or a folder of .txt/.md")] = None,
    collection: Annotated[
        str | None, typer.Option("--collection", "-c", help="Chroma collection (source chroma)")
    ] = None,
    max_documents: Annotated[int, typer.Option(help=help_of(MaxDocuments))] = 200,
    max_minutes: Annotated[float, typer.Option(help=help_of(MaxMinutes))] = 0.0,
    queries_per_document: Annotated[
        int, typer.Option("--queries-per-document", "-k", help=help_of(QueriesPerDocument))
    ] = 2,
    negatives: Annotated[int, typer.Option(help=help_of(Negatives))] = 7,
    mining_depth: Annotated[int, typer.Option(help="candidates mined per query (BM25 + dense)")] = 30,
    judge: Annotated[bool, typer.Option("--judge/--no-judge", help="LLM-judge the mined candidates")] = True,
    judge_depth: Annotated[int | None, typer.Option(help="candidates judged per query [default: negatives]")] = None,
    llm_backend: Annotated[
        str | None, typer.Option(help="transformers | llamacpp | openai | vllm [env ADAPTRANK_LLM_BACKEND]")
    ] = None,
    llm_model: Annotated[str | None, typer.Option(help="model for the backend [env ADAPTRANK_LLM_MODEL]")] = None,
    openai_base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint [env ADAPTRANK_OPENAI_BASE_URL]")
    ] = None,
    question_types: Annotated[str, typer.Option(help="general | medical")] = "general",
    template: Annotated[
        str, typer.Option(help="querygen.typed (one question per call) | querygen.list (JSON, for big LLMs)")
    ] = "querygen.typed",
    dense: Annotated[str, typer.Option(help="dense mining: auto | on | off")] = "auto",
    consistency_depth: Annotated[int | None, typer.Option(help=help_of(ConsistencyDepth))] = None,
    queries: Annotated[str | None, typer.Option(help=help_of(QueryLog))] = None,
    batch_documents: Annotated[int, typer.Option(help="documents per LLM batch and checkpoint")] = 16,
    dev_fraction: Annotated[float, typer.Option(help="share of documents in the dev split")] = 0.1,
    seed: Annotated[int, typer.Option(help="document sample and split seed")] = 0,
    resume: Annotated[str | None, typer.Option("--resume", help="continue an interrupted/cancelled job by id")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Generate a training dataset: LLM-written queries, mined candidates, LLM-judged hard negatives."""
    from adaptrank.server.jobs import JobManager, JobState
    from adaptrank.training.generate import GenerateParams

    with user_errors():
        settings = make_settings(llm_backend=llm_backend, llm_model=llm_model, openai_base_url=openai_base_url)
        manager = JobManager(settings)
        if resume:
            info = manager.resume(resume)
            title = f"resuming {resume}"
        else:
            if not output or not source:
                raise typer.BadParameter("--output and --source are required (or --resume JOB)")
            raw = dict(
                source=source,
                path=path,
                collection=collection,
                output_name=output,
                max_documents=max_documents,
                max_minutes=max_minutes,
                queries_per_document=queries_per_document,
                negatives=negatives,
                mining_depth=mining_depth,
                judge=judge,
                judge_depth=judge_depth,
                llm_backend=llm_backend,
                llm_model=llm_model,
                question_types=question_types,
                template=template,
                dense=dense,
                batch_documents=batch_documents,
                dev_fraction=dev_fraction,
                seed=seed,
                consistency_depth=consistency_depth,
                queries=queries,
            )
            params = parse(GenerateParams, raw)
            if params.path:  # fail before starting a job on what can be checked at once
                from adaptrank.training.corpus import resolve_path

                resolve_path(settings, params.path, restrict=False)
            info = manager.submit("generate", {**params.model_dump(exclude_none=True), "_restrict_paths": False})
            title = f"generating {output}"
        err.print(f"job {info.id} ({settings.jobs_db})", highlight=False)
        with contextlib.redirect_stdout(sys.stderr):
            info = follow_job(
                manager, info.id, title, after_cancel=f"continue with: adaptrank generate --resume {info.id}"
            )
        manager.close(wait=True)
    if info.state != JobState.succeeded:
        err.print(f"[red]error:[/red] job {info.id} {info.state.value}: {info.error}", highlight=False)
        if info.state in (JobState.failed, JobState.interrupted, JobState.cancelled):
            err.print(f"fix the cause, then: adaptrank generate --resume {info.id}", highlight=False)
        raise typer.Exit(1)
    if as_json:
        out.print_json(json.dumps(info.result))
        return
    r = info.result
    table = Table(title=f"dataset {r['dataset']} {r['version']}  ({r['path']})", title_justify="left")
    for col in ("groups", "train", "dev", "documents", "queries kept", "skipped", "seconds"):
        table.add_column(col, justify="right")
    c = r["counts"]
    table.add_row(
        str(c.get("groups")),
        str(c.get("train")),
        str(c.get("dev")),
        str(c.get("documents")),
        str(c.get("queries_kept")),
        ", ".join(f"{k} {v}" for k, v in r["skipped"].items()) or "-",
        f"{r['seconds'].get('total', 0):.0f}",
    )
    out.print(table)


def _job_table(infos: list[Any]) -> Table:
    table = Table(title_justify="left")
    for col in ("id", "kind", "state", "progress", "message", "created", "error / result"):
        table.add_column(col)
    for j in infos:
        p = j.progress
        prog = f"{p.done:g}/{p.total:g}" if p.total else f"{p.done:g}"
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(j.created))
        tail = j.error or (f"{j.result.get('dataset', '')} {j.result.get('version', '')}".strip() if j.result else "")
        table.add_row(j.id, j.kind, j.state.value, prog, p.message, created, tail)
    return table


@jobs_app.callback()
def jobs_main(ctx: typer.Context) -> None:
    """With no subcommand: list the newest jobs."""
    if ctx.invoked_subcommand is None:
        jobs_list()


@jobs_app.command("list")
def jobs_list(
    kind: Annotated[str | None, typer.Option(help=" | ".join(JOB_KINDS))] = None,
    state: Annotated[
        str | None, typer.Option(help="queued | running | succeeded | failed | cancelled | interrupted")
    ] = None,
    limit: Annotated[int, typer.Option(help="newest first")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List background jobs, newest first."""
    from adaptrank.server.jobs import JobManager

    with user_errors():
        infos = JobManager(make_settings()).list(kind, state, limit)
    if as_json:
        out.print_json(json.dumps([i.model_dump(mode="json") for i in infos]))
    else:
        out.print(_job_table(infos))


@jobs_app.command("status")
def jobs_status(job_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One job's state, progress, parameters and result or error."""
    from adaptrank.server.jobs import JobManager

    with user_errors():
        info = JobManager(make_settings()).get(job_id)
    out.print_json(info.model_dump_json()) if as_json else out.print(_job_table([info]))


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Ask a job to stop (it keeps its checkpoint; resume it later)."""
    from adaptrank.server.jobs import JobManager

    with user_errors():
        info = JobManager(make_settings()).cancel(job_id)
    out.print(_job_table([info]))


@jobs_app.command("resume")
def jobs_resume(job_id: str) -> None:
    """Continue an interrupted, failed or cancelled job here, in the foreground."""
    from adaptrank.server.jobs import JobManager

    with user_errors():
        manager = JobManager(make_settings())
        info = manager.resume(job_id)
        with contextlib.redirect_stdout(sys.stderr):
            info = follow_job(
                manager,
                info.id,
                f"resuming {job_id}",
                after_cancel=f"continue with: adaptrank generate --resume {job_id}",
            )
        manager.close(wait=True)
    out.print(_job_table([info]))
    if info.state.value != "succeeded":
        raise typer.Exit(1)


def datasets(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Generated training datasets (every version; * marks the latest)."""
    from adaptrank.training.dataset import DatasetStore

    with user_errors():
        refs = DatasetStore(make_settings()).list()
    if as_json:
        out.print_json(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "version": r.version,
                        "latest": r.latest,
                        "path": str(r.path),
                        "card": r.card.model_dump(mode="json"),
                    }
                    for r in refs
                ]
            )
        )
        return
    table = Table(title_justify="left")
    for col in ("name", "version", "groups", "train", "dev", "documents", "llm", "judge"):
        table.add_column(col)
    for r in refs:
        c = r.card.counts
        table.add_row(
            r.name,
            r.version + (" *" if r.latest else ""),
            str(c.get("groups")),
            str(c.get("train")),
            str(c.get("dev")),
            str(c.get("documents")),
            r.card.llm or "-",
            r.card.judge or "-",
        )
    out.print(table)
