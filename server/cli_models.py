"""CLI commands ``adaptrank models export`` and ``adaptrank models import`` (models that
travel). The work is :mod:`adaptrank.core.export`; registered by ``server/cli.py`` (``COMMAND_MODULES``)
under the ``models`` group."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from adaptrank.server.cli import err, make_settings, out, user_errors


def register(app: typer.Typer) -> None:
    from adaptrank.server.cli import models_app

    models_app.command("export")(export)
    models_app.command("import")(import_)


def export(
    model: Annotated[str, typer.Argument(help="NAME or NAME@VERSION (default: the active version)")],
    out_dir: Annotated[Path, typer.Argument(help="a new (or empty) folder to write")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Write a model as a standard sentence-transformers folder (CrossEncoder, or SentenceTransformer with
    query/document routes) with a README.md model card; it loads without adaptrank."""
    from adaptrank.core.export import export_model
    from adaptrank.core.modelstore import ModelStore

    with user_errors():
        settings = make_settings()
        err.print(f"exporting {model} ...")
        info = export_model(ModelStore(settings.models_dir), model, out_dir, max_length=settings.max_length)
    if as_json:
        out.print_json(json.dumps(info))
        return
    out.print(f"{info['name']}@{info['version']} -> {info['path']} ({info['kind']})", highlight=False)


def import_(
    src: Annotated[Path, typer.Argument(help="a sentence-transformers folder (CrossEncoder or SentenceTransformer)")],
    name: Annotated[str, typer.Argument(help="model-store name; the folder becomes a new version of it")],
    activate: Annotated[
        bool | None,
        typer.Option("--activate/--no-activate", help="make it the active version (default: only when NAME has none)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Bring a sentence-transformers model folder into the model store (validated by loading it first)."""
    from adaptrank.core.export import import_model
    from adaptrank.core.modelstore import ModelStore

    with user_errors():
        settings = make_settings()
        err.print(f"importing {src} ...")
        info = import_model(ModelStore(settings.models_dir), src, name, activate=activate, settings=settings)
    if as_json:
        out.print_json(json.dumps(info))
        return
    state = "active" if info["active"] else "not active"
    out.print(f"{src} -> {info['name']}@{info['version']} (backend {info['backend']}, {state})", highlight=False)
