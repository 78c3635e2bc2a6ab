"""The ``adaptrank`` command line: ``serve``, ``rerank``, ``models`` (and the other parts' commands).

Results go to stdout; loading messages, progress bars and errors go to stderr, so ``adaptrank
serve --transport stdio`` keeps stdout for the MCP protocol and ``adaptrank rerank --json | jq``
works. Flags override the ``ADAPTRANK_*`` environment (see ``Settings``).

Other parts add their commands from their own modules: a module with ``register(app: typer.Typer)``
that adds commands (``@app.command()``) or a group (``app.add_typer(...)``), listed in
``COMMAND_MODULES`` (one line each). Import heavy libraries inside the command functions, so
``adaptrank --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from adaptrank.core.errors import AdaptRankError, InputError
from adaptrank.core.settings import Settings

#: Modules whose ``register(app)`` adds commands; one line per part.
COMMAND_MODULES: list[str] = [
    "adaptrank.server.cli_search",  # ingest, ask, collections
    "adaptrank.server.cli_training",  # generate, jobs, datasets
    "adaptrank.server.cli_finetune",  # finetune, eval, adapt
    "adaptrank.server.cli_models",  # models export, models import
]

app = typer.Typer(
    name="adaptrank",
    help="Rerank passages for RAG with a cross-encoder that adapts to your documents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Results go to stdout; everything else (loading, progress, errors) to stderr.
out = Console()
err = Console(stderr=True)


def make_settings(**overrides: Any) -> Settings:
    """``Settings`` from the environment, with the flags that were given (not None) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Print adaptrank's deliberate errors (bad input, unknown model) as one line; exit code 2."""
    try:
        yield
    except AdaptRankError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None


def follow_job(manager: Any, job_id: str, title: str, *, after_cancel: str) -> Any:
    """Follow a job with a progress bar on stderr, driven by its progress stream (the one MCP
    notifications use), until it ends; returns its status. Ctrl-C cancels the job, prints
    ``job X is <state>; <after_cancel>`` and exits 130."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task(title, total=None)

        def update(info: Any) -> None:
            p = info.progress
            bar.update(task, completed=p.done, total=p.total, description=p.message or info.state.value)

        unsubscribe = manager.subscribe(job_id, update)
        update(manager.get(job_id))
        try:
            while not (info := manager.wait(job_id, timeout=0.5)).finished_state:
                pass
        except KeyboardInterrupt:
            manager.cancel(job_id)
            err.print(f"[yellow]cancelling job {job_id}...[/yellow]")
            info = manager.wait(job_id, timeout=300)
            err.print(f"job {job_id} is {info.state.value}; {after_cancel}")
            raise typer.Exit(130) from None
        finally:
            unsubscribe()
    return info


class Transport(str, Enum):
    stdio = "stdio"
    http = "http"


ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="model-store name, 'zero-shot', or cross-encoder:<path> (env ADAPTRANK_DEFAULT_MODEL, default zero-shot)",
    ),
]


@app.command()
def serve(
    transport: Annotated[
        Transport,
        typer.Option(
            help="stdio for a local MCP client; http for MCP over streamable HTTP at /mcp plus POST /v1/rerank"
        ),
    ] = Transport.stdio,
    host: Annotated[str | None, typer.Option(help="HTTP bind address (env ADAPTRANK_HOST, default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (env ADAPTRANK_PORT, default 8000)")] = None,
    model: ModelOpt = None,
    token: Annotated[
        str | None,
        typer.Option(help="bearer token required on HTTP (env ADAPTRANK_TOKEN); mandatory for a non-loopback --host"),
    ] = None,
    preload: Annotated[bool, typer.Option(help="load the default model before serving")] = True,
    log_level: Annotated[str, typer.Option(help="server log level (stderr)")] = "warning",
) -> None:
    """Run the MCP server (tools rerank, list_models, ...) over stdio or HTTP."""
    from adaptrank.server.app import create_app
    from adaptrank.server.auth import check_bind

    with user_errors():
        settings = make_settings(host=host, port=port, default_model=model, token=token)
        from adaptrank.server.logs import configure_logging

        configure_logging(settings.log_format, log_level)  # ADAPTRANK_LOG_FORMAT=json: JSON lines on stderr
        if transport is Transport.http:
            check_bind(settings.host, settings.token)  # before any slow loading
        mcp = create_app(settings)
        if preload:
            err.print(f"adaptrank: loading model {settings.default_model!r}...", highlight=False)
            with contextlib.redirect_stdout(sys.stderr):  # stdout belongs to the MCP stream
                mcp.services.reranker.scorer()
    if transport is Transport.stdio:
        err.print("adaptrank: serving MCP over stdio", highlight=False)
        mcp.run(transport="stdio", show_banner=False, log_level=log_level.upper())
        return
    from adaptrank.server.http import MCP_PATH, serve_http

    base = f"http://{settings.host}:{settings.port}"
    err.print(
        f"adaptrank: serving MCP at {base}{MCP_PATH}, Cohere rerank at {base}/v1/rerank"
        f"{' (bearer token required)' if settings.token else ''}",
        highlight=False,
    )
    serve_http(mcp, settings, log_level=log_level)


def _read_documents(path: Path) -> tuple[str | None, list[Any]]:
    """A JSON list of documents, or an object ``{"query"?, "documents": [...]}``; ``-`` is stdin."""
    text = sys.stdin.read() if str(path) == "-" else path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError("--file", f"{path} is not valid JSON ({exc})") from None
    if isinstance(data, dict):
        return data.get("query"), list(data.get("documents") or [])
    if isinstance(data, list):
        return None, data
    raise InputError("--file", f"{path} must hold a JSON list of documents or an object with 'documents'")


@app.command()
def rerank(
    query: Annotated[str, typer.Argument(metavar="QUERY", help="the query")],
    documents: Annotated[list[str] | None, typer.Argument(metavar="DOCUMENT", help="passages to rank")] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="JSON file of documents (strings or {id, text, metadata}), or '-' for stdin"),
    ] = None,
    top_n: Annotated[int | None, typer.Option("--top-n", "-n", help="show only the best N")] = None,
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the RerankResponse as JSON")] = False,
) -> None:
    """Rank passages against a query locally (no server) and print a table."""
    with user_errors():
        settings = make_settings(default_model=model)
        docs: list[Any] = list(documents or [])
        if file is not None:
            _, from_file = _read_documents(file)
            docs.extend(from_file)
        from adaptrank.core.engine import Reranker

        reranker = Reranker(settings=settings)
        try:
            with (
                err.status(f"scoring {len(docs)} documents with {settings.default_model!r}..."),
                contextlib.redirect_stdout(sys.stderr),
            ):
                res = reranker.rerank(query, docs, top_n=top_n, return_documents=True)
        finally:
            reranker.close()
    if as_json:
        out.print_json(res.model_dump_json())
        return
    table = Table(title=f"{res.model} ({res.version})", title_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("index", justify="right")
    table.add_column("id")
    table.add_column("score", justify="right")
    table.add_column("text", overflow="fold")
    for rank, r in enumerate(res.results, 1):
        text = r.document.text if r.document else ""
        table.add_row(
            str(rank), str(r.index), r.id or "", f"{r.score:.4f}", text[:200] + ("…" if len(text) > 200 else "")
        )
    out.print(table)


#: ``adaptrank models`` lists; its subcommands (``export``, ``import``: server/cli_models.py) move models
models_app = typer.Typer(no_args_is_help=False)
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the models: the zero-shot default and every model-store version (subcommands: export, import)."""
    from adaptrank.core.engine import Reranker

    if ctx.invoked_subcommand is not None:
        return
    with user_errors():
        settings = make_settings()
        infos = Reranker(settings=settings).models()
    if as_json:
        out.print_json(json.dumps([m.model_dump(mode="json") for m in infos]))
        return
    table = Table(title=f"models in {settings.models_dir} (default: {settings.default_model})", title_justify="left")
    for col in ("name", "version", "backend", "active", "base model", "nDCG@10 after"):
        table.add_column(col)
    for m in infos:
        card = m.card or {}
        after = (card.get("metrics_after") or {}).get("ndcg@10")
        table.add_row(
            m.name,
            m.version,
            m.backend,
            "yes" if m.active else "",
            str(card.get("base_model") or ""),
            f"{after:.4f}" if isinstance(after, (int, float)) else "",
        )
    out.print(table)


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
