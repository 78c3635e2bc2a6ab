"""Incremental ingest into a Chroma collection: read, chunk with overlap, embed in batches, upsert.

Sources (folder, JSONL, BEIR; ``format="auto"`` picks by looking at the path) are read by
:mod:`adaptrank.core.sources`.

Chunk ids are stable, ``<doc id>#<chunk n>``; each chunk's metadata keeps ``doc_id``, ``chunk``,
``n_chunks``, ``source``, ``title``, ``char_start``/``char_end`` (offsets in the document text) and
``content_hash``. Re-ingesting updates instead of duplicating: an unchanged document (same hash) is
skipped without re-embedding, a changed one is re-chunked and its stale chunks deleted, and with
``prune=True`` documents that disappeared from the source are removed.

Lives in core (not server) so every entry point (MCP tool, CLI, benchmarks) ingests the same way.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from adaptrank.core.chunking import chunk_texts, with_title
from adaptrank.core.docstore import DocStore, clean_metadata
from adaptrank.core.errors import InputError
from adaptrank.core.paths import Roots
from adaptrank.core.progress import CountProgress
from adaptrank.core.sources import Format, SourceDocument, detect_format, read_documents

CHUNK_SEP = "#"
INGEST_VERSION = "3"  # part of every content hash: bump when chunk texts would come out differently


@dataclass
class IngestReport:
    collection: str
    source: str
    format: str
    documents: int = 0  # read from the source (non-empty)
    added: int = 0  # new documents
    updated: int = 0  # changed documents (re-chunked, stale chunks removed)
    unchanged: int = 0  # same content hash: skipped, not re-embedded
    skipped_empty: int = 0
    pruned: int = 0  # documents gone from the source and removed (prune=True)
    chunks_written: int = 0
    chunks_deleted: int = 0
    collection_count: int = 0  # passages in the collection afterwards
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- reading ----------------------------------------------------------------------------------
# -- ingesting --------------------------------------------------------------------------------
def chunk_id(doc_id: str, n: int) -> str:
    return f"{doc_id}{CHUNK_SEP}{n}"


def _content_hash(doc: SourceDocument, params: str) -> str:
    h = hashlib.sha1()
    for part in (params, doc.title, doc.text, json.dumps(doc.metadata, sort_keys=True, default=str)):
        h.update(part.encode("utf-8", "replace"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def check_chunking(chunk_tokens: int, overlap: int, cap: int | None = None) -> int:
    """The chunk size ingest will use (``chunk_tokens``, capped at ``cap``, what the embedding model
    reads); an ``InputError`` naming ``overlap`` if consecutive chunks would share half or more."""
    size = min(chunk_tokens, cap) if cap else chunk_tokens
    if size < 8:
        raise InputError("chunk_tokens", f"is {size}; it must be at least 8")
    if not 0 <= overlap <= size // 2:
        capped = (
            f" (chunk_tokens {chunk_tokens} capped at {cap}, what the embedding model reads)"
            if size != chunk_tokens
            else ""
        )
        raise InputError("overlap", f"is {overlap}; it must be between 0 and half of chunk_tokens: {size // 2}{capped}")
    return size


def ingest(
    store: DocStore,
    path: str | Path,
    collection: str,
    *,
    format: Format = "auto",  # noqa: A002
    chunk_tokens: int = 200,
    overlap: int = 40,
    prefix_title: bool = True,
    prune: bool = False,
    batch_size: int = 64,
    progress: bool | CountProgress = True,
    id_field: str = "id",
    text_field: str = "text",
    title_field: str = "title",
    metadata_field: str = "metadata",
    roots: Roots = None,
) -> IngestReport:
    """Read ``path`` and upsert its chunks into ``collection`` (created if missing).

    ``chunk_tokens`` counts the embedding model's tokens and is capped at what it reads.
    ``prefix_title``: stored (and embedded, and reranked) chunk text is ``"<title>. <chunk>"``
    (unless the chunk already names the title near its start), so a chunk out of context still
    names its subject.
    """
    t0 = time.perf_counter()
    path = Path(path)
    fmt = detect_format(path) if format == "auto" else format
    ef = store.embedding_function
    # Checked before anything is read or created: a bad value must not leave an empty collection.
    max_tokens = check_chunking(chunk_tokens, overlap, ef.max_tokens - 16 if prefix_title else ef.max_tokens)
    docs: list[SourceDocument] = []
    report = IngestReport(collection=collection, source=str(path.resolve()), format=fmt)
    for doc in read_documents(
        path,
        fmt,
        id_field=id_field,
        text_field=text_field,
        title_field=title_field,
        metadata_field=metadata_field,
        roots=roots,
    ):
        if doc.text.strip():
            docs.append(doc)
        else:
            report.skipped_empty += 1
    report.documents = len(docs)
    if not docs:
        raise InputError("path", f"{path} holds no non-empty documents")

    store.collection(collection, create=True)
    existing = _existing(store, collection)
    params = f"{INGEST_VERSION}|{ef.model}|{max_tokens}|{overlap}|{prefix_title}"

    todo: list[tuple[SourceDocument, str]] = []
    for doc in docs:
        digest = _content_hash(doc, params)
        old = existing.get(doc.id)
        if old is None:
            report.added += 1
        elif old["hash"] == digest and len(old["ids"]) == old["n_chunks"]:
            report.unchanged += 1
            continue
        else:
            report.updated += 1
        todo.append((doc, digest))

    ids: list[str] = []
    texts: list[str] = []
    metas: list[dict[str, Any]] = []
    stale: list[str] = []
    for lo in range(0, len(todo), 256):
        batch = todo[lo : lo + 256]
        chunked = chunk_texts([d.text for d, _ in batch], max_tokens, overlap, ef.tokenizer)
        for (doc, digest), chunks in zip(batch, chunked, strict=True):
            new_ids = [chunk_id(doc.id, c.index) for c in chunks]
            for c, cid in zip(chunks, new_ids, strict=True):
                ids.append(cid)
                texts.append(_with_title(c.text, doc.title) if prefix_title else c.text)
                metas.append(
                    {
                        **clean_metadata(doc.metadata),
                        "doc_id": doc.id,
                        "chunk": c.index,
                        "n_chunks": len(chunks),
                        "source": doc.source,
                        "title": doc.title,
                        "char_start": c.start,
                        "char_end": c.end,
                        "content_hash": digest,
                    }
                )
            if doc.id in existing:
                stale.extend(sorted(existing[doc.id]["ids"] - set(new_ids)))

    if prune:
        seen = {d.id for d in docs}
        root = report.source
        for doc_id, old in existing.items():
            if (
                doc_id not in seen
                and old["source"]
                and (old["source"] == root or old["source"].startswith(root.rstrip("/") + "/"))
            ):
                stale.extend(sorted(old["ids"]))
                report.pruned += 1

    if ids:  # write first, then delete: an interrupted run never loses a document
        report.chunks_written = store.upsert(collection, ids, texts, metas, batch_size=batch_size, progress=progress)
    if stale:
        for lo in range(0, len(stale), 1000):
            store.delete(collection, ids=stale[lo : lo + 1000])
        report.chunks_deleted = len(stale)
    report.collection_count = store.count(collection)
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


def _with_title(text: str, title: str) -> str:
    """``"<title>. <text>"`` unless the chunk already names its title near its start; the chunk
    alone for a blank title (:func:`~adaptrank.core.chunking.with_title`)."""
    title = title.strip()
    if title and title.lower() in text[: len(title) + 120].lower():
        return text
    return with_title(text, title)


def _existing(store: DocStore, collection: str) -> dict[str, dict[str, Any]]:
    """doc id -> its chunk ids, content hash, chunk count and source, from chunk metadata."""
    out: dict[str, dict[str, Any]] = {}
    for cid, _, meta in store.iter_documents(collection, batch_size=5000, include_text=False):
        doc_id = meta.get("doc_id")
        if doc_id is None:
            continue
        entry = out.setdefault(
            str(doc_id),
            {
                "ids": set(),
                "hash": meta.get("content_hash"),
                "n_chunks": meta.get("n_chunks"),
                "source": meta.get("source", ""),
            },
        )
        entry["ids"].add(cid)
        if entry["hash"] != meta.get("content_hash"):
            entry["hash"] = None  # mixed generations: treat as changed
    return out
