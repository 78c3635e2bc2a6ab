"""Source readers: documents from a folder of text files, a JSONL file or a BEIR corpus.

Formats (``format="auto"`` picks by looking at the path):

* ``folder`` — every ``.txt``/``.md``/``.markdown`` file under a directory (hidden ones skipped);
  the document id is the path relative to the folder, the title the first Markdown heading.
  A single ``.txt``/``.md`` file works too (id: its file name).
* ``jsonl`` — one JSON object per line with id/text fields (names configurable: ``id_field``,
  ``text_field``, ``title_field``, ``metadata_field``); other scalar fields become metadata.
* ``beir`` — a BEIR folder (``corpus.jsonl`` with ``_id``, ``title``, ``text``), or the
  ``corpus.jsonl`` file itself; repeated ids keep every copy as ``<id>#2``... like ``load_beir``.

Ingest (:mod:`adaptrank.core.ingest`) and training-data generation (``training.corpus``) both read
through :func:`read_documents`. Paths are checked against the allowed roots where a caller gives them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from adaptrank.core.errors import InputError
from adaptrank.core.paths import Roots, inside_roots

Format = Literal["auto", "folder", "jsonl", "beir"]
TEXT_SUFFIXES = (".txt", ".md", ".markdown")


@dataclass
class SourceDocument:
    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the file it came from


def detect_format(path: Path) -> Format:
    if path.is_dir():
        return "beir" if (path / "corpus.jsonl").is_file() else "folder"
    if path.name == "corpus.jsonl":
        return "beir"
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if path.suffix in TEXT_SUFFIXES:
        return "folder"
    raise InputError("path", f"{path} is not a folder, a .jsonl file or a .txt/.md file; pass format explicitly")


def read_documents(
    path: str | Path,
    format: Format = "auto",  # noqa: A002 - the natural name for a CLI flag
    *,
    id_field: str = "id",
    text_field: str = "text",
    title_field: str = "title",
    metadata_field: str = "metadata",
    roots: Roots = None,
) -> Iterator[SourceDocument]:
    """Yield the documents of a source (see the module doc for the formats).

    ``roots``: when given (MCP callers), every file opened must resolve inside one of them; a file
    symlink pointing elsewhere is an ``InputError`` naming it, before anything is read.
    """
    path = Path(path)
    inside_roots(path, roots)
    if not path.exists():
        raise InputError("path", f"{path} does not exist")
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "folder":
        yield from _read_folder(path, roots)
    elif fmt == "beir":
        yield from _read_beir(path, roots)
    elif fmt == "jsonl":
        yield from _read_jsonl(inside_roots(path, roots), id_field, text_field, title_field, metadata_field)
    else:
        raise InputError("format", f"is {format!r}; use auto, folder, jsonl or beir")


def _markdown_title(text: str) -> str:
    for line in text.splitlines()[:20]:
        if line.startswith("# "):
            return line[2:].strip()
    return ""


def _read_folder(path: Path, roots: Roots) -> Iterator[SourceDocument]:
    if path.is_file():
        files, root = [path], path.parent
    else:
        root = path
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in TEXT_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise InputError("path", f"{path} holds no .txt/.md files")
    for f in files:  # check them all before reading any: a refused link must not leave half an ingest
        inside_roots(f, roots)
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        title = _markdown_title(text) if f.suffix.lower() != ".txt" else ""
        yield SourceDocument(
            id=f.relative_to(root).as_posix(), text=text, title=title or f.stem, source=str(f.resolve())
        )


def _read_jsonl(
    path: Path, id_field: str, text_field: str, title_field: str, metadata_field: str
) -> Iterator[SourceDocument]:
    if path.is_dir():
        raise InputError("path", f"{path} is a folder; jsonl needs a file")
    seen: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError("path", f"{path} line {n} is not valid JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise InputError("path", f"{path} line {n} is not a JSON object")
            doc_id = row.get(id_field, row.get("_id") if id_field == "id" else None)
            if doc_id is None or str(doc_id).strip() == "":
                raise InputError("id_field", f"{path} line {n} has no {id_field!r} field")
            if text_field not in row or not isinstance(row[text_field], str):
                raise InputError("text_field", f"{path} line {n} has no string {text_field!r} field")
            doc_id = str(doc_id)
            if doc_id in seen:
                raise InputError("id_field", f"{path} line {n} repeats id {doc_id!r}")
            seen.add(doc_id)
            meta = row.get(metadata_field) if isinstance(row.get(metadata_field), dict) else {}
            extra = {
                k: v
                for k, v in row.items()
                if k not in (id_field, "_id", text_field, title_field, metadata_field)
                and isinstance(v, str | int | float | bool)
            }
            yield SourceDocument(
                id=doc_id,
                text=row[text_field],
                title=str(row.get(title_field) or ""),
                metadata={**extra, **meta},
                source=str(path.resolve()),
            )


def _read_beir(path: Path, roots: Roots) -> Iterator[SourceDocument]:
    from adaptrank.core.beir import load_corpus

    corpus_path = path / "corpus.jsonl" if path.is_dir() else path
    if not corpus_path.is_file():
        raise InputError("path", f"{path} has no corpus.jsonl (BEIR layout expected)")
    for doc_id, doc in load_corpus(inside_roots(corpus_path, roots)).items():
        yield SourceDocument(
            id=doc_id, text=doc["text"], title=doc.get("title") or "", source=str(corpus_path.resolve())
        )
