"""CLI commands ``adaptrank finetune``, ``adaptrank eval`` and ``adaptrank adapt``.

``finetune`` and ``adapt`` run as jobs of the SQLite job system (the same one the MCP tools use),
followed in the foreground with a progress bar; Ctrl-C cancels and leaves the model store as it was.
Under ``torchrun`` / ``accelerate launch`` (``WORLD_SIZE`` > 1) ``finetune`` trains in-process on
every rank (DDP) and rank 0 saves and promotes::

    torchrun --nproc_per_node 2 $(which adaptrank) finetune my-dataset

Registered by ``server/cli.py`` (``COMMAND_MODULES``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from adaptrank.server.cli import err, follow_job, make_settings, out, user_errors
from adaptrank.training.params import (
    Depth,
    Epochs,
    GroupSize,
    LearningRate,
    MaxDocuments,
    MaxQueries,
    QueriesPerDocument,
    help_of,
    parse,
)


def register(app: typer.Typer) -> None:
    app.command()(finetune)
    app.command("eval")(evaluate)
    app.command()(adapt)


def _run_job(kind: str, params: dict[str, Any], title: str, settings: Any) -> dict[str, Any]:
    from adaptrank.server.jobs import JobManager, JobState

    manager = JobManager(settings)
    info = manager.submit(kind, params)
    err.print(f"job {info.id} ({settings.jobs_db})", highlight=False)
    with contextlib.redirect_stdout(sys.stderr):
        info = follow_job(manager, info.id, title, after_cancel="the model store is unchanged")
    manager.close(wait=True)
    if info.state != JobState.succeeded:
        err.print(f"[red]error:[/red] job {info.id} {info.state.value}: {info.error}", highlight=False)
        raise typer.Exit(1)
    return info.result or {}


def _metrics_table(title: str, rows: list[tuple[str, dict[str, float]]]) -> Table:
    keys: list[str] = []
    for _, m in rows:
        keys += [k for k in m if k not in keys and k != "queries"]
    table = Table(title=title, title_justify="left")
    table.add_column("model")
    for k in keys:
        table.add_column(k, justify="right")
    for name, m in rows:
        table.add_row(name, *[f"{m[k]:.4f}" if k in m else "-" for k in keys])
    return table


def finetune(
    dataset: Annotated[str, typer.Argument(help="dataset name (or name@version), see `adaptrank datasets`")],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="model-store name [default: <dataset>-reranker]")
    ] = None,
    method: Annotated[str, typer.Option(help="auto | query-encoder | residual | cross-encoder | bi-encoder")] = "auto",
    base_model: Annotated[str | None, typer.Option(help="zero-shot, a store name, a local path or an HF id")] = None,
    epochs: Annotated[float, typer.Option(help=help_of(Epochs))] = 2.0,
    group_size: Annotated[int, typer.Option("--group-size", "-g", help=help_of(GroupSize))] = 8,
    learning_rate: Annotated[float | None, typer.Option("--lr", help=help_of(LearningRate))] = None,
    batch_size: Annotated[int, typer.Option(help="groups per step (per device)")] = 16,
    grad_accumulation: Annotated[int, typer.Option(help="steps per optimizer update")] = 1,
    max_length: Annotated[int | None, typer.Option(help="tokens (query tokens for query-encoder)")] = None,
    freeze_layers: Annotated[int, typer.Option(help="bottom encoder layers kept frozen")] = 0,
    in_batch_negatives: Annotated[
        bool, typer.Option("--in-batch-negatives", help="query-encoder: other queries' passages as extra negatives")
    ] = False,
    patience: Annotated[
        int,
        typer.Option(help="dev evaluations without a gain before stopping (0: never; the best dev checkpoint is kept)"),
    ] = 0,
    max_groups: Annotated[int | None, typer.Option(help="use at most this many training groups")] = None,
    promote: Annotated[
        bool | None,
        typer.Option(
            "--promote/--no-promote",
            help="force or forbid promotion [default: only if it beats the active model on dev]",
        ),
    ] = None,
    precision: Annotated[str, typer.Option(help="auto (bf16 where the hardware has it) | fp32 | bf16")] = "auto",
    seed: Annotated[int, typer.Option()] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Fine-tune the reranker on a generated dataset (LCE); promote it only if it wins on dev."""
    from adaptrank.core.modelstore import ModelStore
    from adaptrank.training.finetune import finetune as run
    from adaptrank.training.finetune import load_dataset_groups, parse_params, resolve_base

    raw = dict(
        dataset=dataset,
        output_name=output,
        method=method,
        base_model=base_model,
        epochs=epochs,
        group_size=group_size,
        learning_rate=learning_rate,
        batch_size=batch_size,
        grad_accumulation=grad_accumulation,
        max_length=max_length,
        freeze_layers=freeze_layers,
        in_batch_negatives=in_batch_negatives,
        patience=patience,
        max_groups=max_groups,
        promote=promote,
        precision=precision,
        seed=seed,
    )
    with user_errors():
        settings = make_settings()
        params = parse_params({k: v for k, v in raw.items() if v is not None})
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun / accelerate launch: train here, on every rank
            result = run(
                params, settings, progress=lambda d, t, m: err.print(m, highlight=False) if m else None
            ).model_dump(mode="json")
            if result.get("rank", 0) != 0:
                return
        else:
            load_dataset_groups(params, settings)  # fail now on a bad dataset, not inside the job
            resolve_base(params.base_model, ModelStore(settings.models_dir))
            result = _run_job("finetune", params.model_dump(exclude_none=True), f"fine-tuning on {dataset}", settings)
    if as_json:
        out.print_json(json.dumps(result))
        return
    out.print(
        _metrics_table(
            f"{result['name']}@{result['version']}  method {result['method']}  ({result['decision']})",
            [(f"before: {result['baseline']}", result["metrics_before"]), ("after", result["metrics_after"])],
        )
    )


def evaluate(
    path: Annotated[str, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels.tsv")],
    models: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="model spec; repeat for several [default: zero-shot]")
    ] = None,
    first_stage: Annotated[str, typer.Option(help="bm25 | chroma:<collection>")] = "bm25",
    depth: Annotated[int, typer.Option(help=help_of(Depth))] = 30,
    max_queries: Annotated[int | None, typer.Option(help=help_of(MaxQueries))] = None,
    seed: Annotated[int, typer.Option(help="query sample seed")] = 0,
    report_path: Annotated[
        str | None,
        typer.Option(
            "--report",
            help="also write an HTML report here: metrics, per-query "
            "scatter of the first model vs the last, training curve, the queries helped/hurt most",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Evaluate rerankers on BEIR data: nDCG@10, MRR@10, Recall@depth, with the first stage as baseline."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from adaptrank.training.evaluate import EvaluateParams, evaluate_beir

    with user_errors():
        settings = make_settings()
        p = parse(
            EvaluateParams,
            dict(
                path=path,
                models=models or ["zero-shot"],
                first_stage=first_stage,
                depth=depth,
                max_queries=max_queries,
                seed=seed,
            ),
        )
        with (
            Progress(
                TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(), console=err
            ) as bar,
            contextlib.redirect_stdout(sys.stderr),
        ):
            task = bar.add_task("evaluating", total=None)
            report = evaluate_beir(
                p.path,
                p.models,
                first_stage=p.first_stage,
                depth=p.depth,
                max_queries=p.max_queries,
                seed=p.seed,
                settings=settings,
                progress=lambda d, t, m: bar.update(task, completed=d, total=t, description=m or ""),
            )
        if report_path:
            written = _write_eval_report(report, report_path, settings)
            err.print(f"report: {written}", highlight=False)
    if as_json:
        out.print_json(report.model_dump_json())
        return
    out.print(
        _metrics_table(
            f"{report.queries} queries, {report.documents} documents, {report.first_stage} top-{report.depth}",
            [
                (
                    r.model + (f"@{r.version}" if r.version and r.model != r.version and "@" not in r.model else ""),
                    r.metrics,
                )
                for r in report.results
            ],
        )
    )


def _write_eval_report(report: Any, path: str, settings: Any) -> Any:
    from adaptrank.training.report import card_history, eval_report_data, render_report, write_report

    page = eval_report_data(report)
    compared = report.results[-1].model
    history, best_step, dev_metric = card_history(compared, settings)
    return write_report(
        path,
        render_report(
            f"adaptrank eval: {page['compared']}",
            page.pop("metrics"),
            page.pop("per_query"),
            history,
            page.pop("examples"),
            best_step=best_step,
            dev_metric=dev_metric,
            **page,
        ),
    )


def adapt(
    collection: Annotated[
        str | None, typer.Option("--collection", "-c", help="Chroma collection of your documents")
    ] = None,
    path: Annotated[
        str | None, typer.Option(help="or a BEIR folder / text folder (BEIR qrels enable evaluation)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="base name: dataset <name>-synth, model <name>-reranker")] = None,
    max_documents: Annotated[int, typer.Option(help=help_of(MaxDocuments))] = 1000,
    max_minutes: Annotated[
        float,
        typer.Option(help="wall-time budget for generation + fine-tuning; generation stops early to fit (0: none)"),
    ] = 20.0,
    queries_per_document: Annotated[
        int, typer.Option("--queries-per-document", "-k", help=help_of(QueriesPerDocument))
    ] = 2,
    judge: Annotated[bool, typer.Option("--judge/--no-judge", help="LLM-judge mined candidates")] = False,
    question_types: Annotated[str, typer.Option(help="general | medical")] = "general",
    queries: Annotated[
        str | None,
        typer.Option(help="a query log: real queries (.txt one per line, or .jsonl) to train on and imitate"),
    ] = None,
    eval_path: Annotated[
        str | None, typer.Option(help="a BEIR folder with real questions + qrels: they decide the promotion")
    ] = None,
    llm_backend: Annotated[str | None, typer.Option(help="transformers | llamacpp | openai | vllm")] = None,
    llm_model: Annotated[str | None, typer.Option()] = None,
    method: Annotated[str, typer.Option(help="auto | query-encoder | residual | cross-encoder | bi-encoder")] = "auto",
    epochs: Annotated[float, typer.Option(help=help_of(Epochs))] = 2.0,
    group_size: Annotated[int, typer.Option("--group-size", "-g", help=help_of(GroupSize))] = 8,
    promote: Annotated[bool | None, typer.Option("--promote/--no-promote")] = None,
    eval_max_queries: Annotated[int | None, typer.Option(help="evaluate on a sample of the real questions")] = None,
    report_path: Annotated[
        str | None,
        typer.Option(
            "--report",
            help="also write an HTML report here: metrics, per-query "
            "scatter of the previous model vs the new one, training curve, the queries helped/hurt most",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Adapt the reranker to your documents: generate → fine-tune → evaluate → promote."""
    from adaptrank.training.adapt import AdaptParams

    with user_errors():
        settings = make_settings(llm_backend=llm_backend, llm_model=llm_model)
        params = parse(
            AdaptParams,
            dict(
                collection=collection,
                path=path,
                name=name,
                max_documents=max_documents,
                max_minutes=max_minutes,
                queries_per_document=queries_per_document,
                judge=judge,
                question_types=question_types,
                queries=queries,
                eval_path=eval_path,
                llm_backend=llm_backend,
                llm_model=llm_model,
                method=method,
                epochs=epochs,
                group_size=group_size,
                promote=promote,
                eval_max_queries=eval_max_queries,
            ),
        )
        extra: dict[str, Any] = {"_restrict_paths": False}
        if report_path:
            from pathlib import Path

            extra["_report"] = str(Path(report_path).expanduser().resolve())
        result = _run_job("adapt", {**params.model_dump(exclude_none=True), **extra}, "adapting", settings)
        if result.get("report"):
            err.print(f"report: {result['report']}", highlight=False)
        elif result.get("report_error"):
            err.print(f"[red]report not written:[/red] {result['report_error']}", highlight=False)
    if as_json:
        out.print_json(json.dumps(result))
        return
    if result.get("budget"):
        out.print(result["budget"], highlight=False)
    out.print(f"[bold]{result['decision']}[/bold] (decided on the {result['gate']})", highlight=False)
    out.print(
        _metrics_table(
            f"{result['model']}@{result['version']}",
            [("dev before", result["dev_before"]), ("dev after", result["dev_after"])],
        )
    )
    if result.get("evaluation"):
        ev = result["evaluation"]
        out.print(
            _metrics_table(
                f"real questions: {ev['queries']}, {ev['first_stage']} top-{ev['depth']}",
                [(r["model"], r["metrics"]) for r in ev["results"]],
            )
        )
    out.print(f"seconds: {result['seconds']}")
