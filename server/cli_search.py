"""CLI commands ``adaptrank ingest`` and ``adaptrank ask`` (the decomposition agent), and
``adaptrank collections``.

Registered by ``server/cli.py`` (``COMMAND_MODULES``). Results go to stdout, progress and errors to
stderr. The CLI reads any local path its user can (the allowed-roots guard is for MCP callers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from adaptrank.server.cli import err, make_settings, out, user_errors

ChromaOpt = Annotated[
    str | None,
    typer.Option(
        "--chroma-url",
        help="a Chroma server (chroma run --host 127.0.0.1 --port N) "
        "[env ADAPTRANK_CHROMA_URL; default: embedded under ADAPTRANK_HOME/chroma]",
    ),
]
CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="Chroma collection name")]


def register(app: typer.Typer) -> None:
    app.command()(ingest)
    app.command()(ask)
    app.command()(collections)


def ingest(
    path: Annotated[Path, typer.Argument(help="folder of .txt/.md files, a .jsonl file, or a BEIR folder")],
    collection: CollectionOpt,
    format: Annotated[str, typer.Option("--format", help="auto | folder | jsonl | beir")] = "auto",  # noqa: A002
    chunk_tokens: Annotated[int, typer.Option(help="tokens per chunk (embedding model's tokenizer)")] = 200,
    overlap: Annotated[int, typer.Option(help="tokens shared by consecutive chunks")] = 40,
    prune: Annotated[bool, typer.Option(help="remove documents that are gone from the source")] = False,
    no_title_prefix: Annotated[
        bool, typer.Option("--no-title-prefix", help="store chunks without '<title>. '")
    ] = False,
    id_field: Annotated[str, typer.Option(help="JSONL: id field")] = "id",
    text_field: Annotated[str, typer.Option(help="JSONL: text field")] = "text",
    title_field: Annotated[str, typer.Option(help="JSONL: title field")] = "title",
    metadata_field: Annotated[str, typer.Option(help="JSONL: metadata object field")] = "metadata",
    batch_size: Annotated[int, typer.Option(help="passages per embedding batch")] = 64,
    chroma_url: ChromaOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Chunk, embed and store documents in a Chroma collection (re-running updates, never duplicates)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from adaptrank.core.docstore import DocStore
    from adaptrank.core.ingest import ingest as run_ingest

    with user_errors():
        settings = make_settings(chroma_url=chroma_url)
        store = DocStore(settings)
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task(f"reading {path}", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total, description=f"embedding into {collection}")

            with contextlib.redirect_stdout(sys.stderr):
                report = run_ingest(
                    store,
                    path,
                    collection,
                    format=format,
                    chunk_tokens=chunk_tokens,
                    overlap=overlap,  # type: ignore[arg-type]
                    prefix_title=not no_title_prefix,
                    prune=prune,
                    batch_size=batch_size,
                    progress=progress,
                    id_field=id_field,
                    text_field=text_field,
                    title_field=title_field,
                    metadata_field=metadata_field,
                )
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
        return
    table = Table(title=f"ingested {report.source} -> {report.collection} ({store.location})", title_justify="left")
    for col in (
        "documents",
        "added",
        "updated",
        "unchanged",
        "pruned",
        "chunks written",
        "chunks deleted",
        "collection size",
        "seconds",
    ):
        table.add_column(col, justify="right")
    table.add_row(
        *(
            str(x)
            for x in (
                report.documents,
                report.added,
                report.updated,
                report.unchanged,
                report.pruned,
                report.chunks_written,
                report.chunks_deleted,
                report.collection_count,
                report.seconds,
            )
        )
    )
    out.print(table)


def ask(
    question: Annotated[str, typer.Argument(help="the question (compound questions get decomposed)")],
    collection: CollectionOpt,
    top_n: Annotated[int, typer.Option("--top-n", "-n", help="passages to show")] = 5,
    k: Annotated[int, typer.Option("-k", help="candidates retrieved per query")] = 20,
    decompose: Annotated[bool, typer.Option(help="split the question into sub-questions")] = True,
    sub_question: Annotated[
        list[str] | None, typer.Option("--sub-question", "-s", help="your own sub-question (repeatable)")
    ] = None,
    llm: Annotated[bool, typer.Option(help="decompose with the LLM (ADAPTRANK_LLM_*) instead of rules")] = False,
    hybrid: Annotated[bool, typer.Option(help="fuse dense retrieval with BM25")] = False,
    follow_up: Annotated[bool, typer.Option(help="one more round for sub-questions the top missed")] = False,
    answer: Annotated[bool, typer.Option(help="write an answer with citations (loads the LLM)")] = False,
    model: Annotated[str | None, typer.Option("--model", "-m", help="reranker model")] = None,
    rerank: Annotated[
        str,
        typer.Option(
            help="original: rank against the whole question; fusion: also against each sub-question, rankings fused"
        ),
    ] = "fusion",
    clean: Annotated[bool, typer.Option(help="drop greetings, thanks, sign-offs and narration first")] = True,
    chroma_url: ChromaOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the SearchResult as JSON")] = False,
) -> None:
    """Search a collection with the decomposition agent (provenance and stage timings shown).

    Cleans the message of chatter, splits it if it asks several things, retrieves per
    sub-question, merges the pools and reranks them against the cleaned question."""
    from adaptrank.server.context import Services
    from adaptrank.server.tools_search import run_search

    with user_errors():
        settings = make_settings(chroma_url=chroma_url, default_model=model)
        with err.status("loading models and searching..."), contextlib.redirect_stdout(sys.stderr):
            services = Services(settings)
            try:
                res = asyncio.run(
                    run_search(
                        services,
                        question,
                        collection,
                        top_n=top_n,
                        decompose=decompose,
                        k=k,
                        sub_questions=sub_question,
                        hybrid=hybrid,
                        follow_up=follow_up,
                        answer=answer,
                        rerank=rerank,
                        llm=llm,
                        clean=clean,
                    )
                )
            finally:
                services.close()
    if as_json:
        out.print_json(res.model_dump_json())
        return
    out.print(
        f"[bold]{res.question}[/bold]  ({res.decomposition} decomposition; pool {res.pool_size}; model {res.model})",
        highlight=False,
    )
    if res.cleaned_question:
        out.print(f"  cleaned: {res.cleaned_question}", highlight=False)
    if res.decomposition_error:
        err.print(f"  LLM decomposition rejected: {res.decomposition_error}", highlight=False)
    for i, q in enumerate(res.queries):
        out.print(f"  q{i}: {q}", highlight=False)
    table = Table(title_justify="left")
    for col, justify in (
        ("rank", "right"),
        ("score", "right"),
        ("id", "left"),
        ("found by (query:rank)", "left"),
        ("text", "left"),
    ):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for p in res.results:
        found = " ".join(f"q{f.query_index}:{f.rank}" for f in p.found_by)
        text = p.text.replace("\n", " ")
        table.add_row(str(p.rank), f"{p.score:.4f}", p.id, found, text[:160] + ("…" if len(text) > 160 else ""))
    out.print(table)
    if res.answer is not None:
        out.print(f"[bold]answer[/bold]: {res.answer.text}", highlight=False)
        out.print(f"citations: {', '.join(res.answer.citations) or '-'}", highlight=False)
    timing = "  ".join(f"{s.name} {1000 * s.seconds:.0f} ms" for s in res.trace.stages)
    out.print(f"[dim]trace: {timing}  total {1000 * res.trace.total_seconds:.0f} ms[/dim]", highlight=False)


def collections(
    chroma_url: ChromaOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the Chroma collections and their passage counts."""
    from adaptrank.core.docstore import DocStore

    with user_errors():
        store = DocStore(make_settings(chroma_url=chroma_url))
        rows = [(n, store.count(n)) for n in store.list_collections()]
    if as_json:
        out.print_json(
            json.dumps({"location": store.location, "collections": [{"name": n, "count": c} for n, c in rows]})
        )
        return
    table = Table(title=f"collections in {store.location}", title_justify="left")
    table.add_column("name")
    table.add_column("passages", justify="right")
    for n, c in rows:
        table.add_row(n, str(c))
    out.print(table)
