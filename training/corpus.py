"""Corpus sources for training-data generation: a Chroma collection, a BEIR corpus, a folder.

Everything becomes a list of :class:`CorpusPassage` — the unit queries are written for and candidates
are mined from — each knowing its source document (``doc_id``), so mining can exclude a query's
own document and the dataset can split by document.

* ``chroma``: the collection's records are already chunks (``adaptrank ingest`` stores
  ``doc_id`` in their metadata); records without one are their own document.
* ``beir``: ``corpus.jsonl`` (``_id``, ``title``, ``text``); text is ``"<title>. <text>"``.
* ``folder``: ``.txt``/``.md`` files (``core.sources.read_documents``).

Files and BEIR documents are chunked to the reranker's passage budget (``core.chunking``), so a
training passage is exactly what the cross-encoder will see. MCP callers may only read paths
inside the allowed roots (``core.paths``); the CLI reads any path its user gives.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from adaptrank.core.chunking import chunk_texts, passage_budget, with_title
from adaptrank.core.docstore import DocStore
from adaptrank.core.errors import InputError, NotFoundError
from adaptrank.core.paths import allowed_roots, check_allowed_path
from adaptrank.core.settings import Settings
from adaptrank.core.sources import read_documents

SourceKind = Literal["chroma", "beir", "folder"]


@dataclass
class CorpusPassage:
    id: str  # unique: "<doc_id>#<chunk>" for chunked sources, the record id for Chroma
    doc_id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Corpus:
    """All passages of a source, grouped by document (documents in source order)."""

    kind: str
    location: str
    passages: list[CorpusPassage]
    skipped_empty: int = 0

    def __post_init__(self) -> None:
        self.by_doc: dict[str, list[CorpusPassage]] = {}
        for p in self.passages:
            self.by_doc.setdefault(p.doc_id, []).append(p)

    @property
    def doc_ids(self) -> list[str]:
        return list(self.by_doc)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "location": self.location,
            "documents": len(self.by_doc),
            "passages": len(self.passages),
            "skipped_empty": self.skipped_empty,
        }


def resolve_path(settings: Settings, path: str | None, restrict: bool) -> Path:
    """The source path: inside the allowed roots when ``restrict`` (MCP callers), any existing
    path otherwise (the CLI's own user)."""
    if not path or not str(path).strip():
        raise InputError("path", "a path is required for this source")
    if restrict:
        return check_allowed_path(settings, path, "path")
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise InputError("path", f"{path!r} does not exist")
    return p


def load_corpus(
    settings: Settings,
    source: SourceKind,
    *,
    collection: str | None = None,
    path: str | None = None,
    restrict_paths: bool = True,
    chunk_tokens: int | None = None,
    overlap: int = 32,
    docstore: Any = None,
) -> Corpus:
    """Read every passage of the source (mining needs the whole corpus, not only the sample)."""
    if source == "chroma":
        if not collection:
            raise InputError("collection", "a collection name is required when source is 'chroma'")
        return _from_chroma(settings, collection, docstore)
    if source not in ("beir", "folder"):
        raise InputError("source", f"{source!r} is not one of ['chroma', 'beir', 'folder']")
    root = resolve_path(settings, path, restrict_paths)
    if (
        source == "beir"
        and not (root.is_file() and root.name.endswith(".jsonl"))
        and not (root / "corpus.jsonl").is_file()
    ):
        raise InputError("path", f"{path!r} has no corpus.jsonl (BEIR layout expected)")
    if source == "folder" and not (root.is_dir() or root.suffix.lower() in (".txt", ".md", ".markdown")):
        raise InputError("path", f"{path!r} is not a folder of .txt/.md files")
    docs, skipped = [], 0
    roots = allowed_roots(settings) if restrict_paths else None
    for doc in read_documents(root, "beir" if source == "beir" else "folder", roots=roots):
        if doc.text.strip():
            docs.append(doc)
        else:
            skipped += 1
    if not docs:
        raise InputError("path", f"{path!r} holds no non-empty documents")
    budget = chunk_tokens or default_chunk_tokens(settings)
    passages: list[CorpusPassage] = []
    texts = [with_title(d.text, d.title) if source == "beir" else d.text for d in docs]
    for lo in range(0, len(docs), 512):
        chunked = chunk_texts(texts[lo : lo + 512], budget, min(overlap, budget // 4))
        for doc, chunks in zip(docs[lo : lo + 512], chunked, strict=True):
            for c in chunks:
                text = c.text
                if c.index > 0 and doc.title.strip() and not text.lower().startswith(doc.title.strip().lower()):
                    text = with_title(text, doc.title)  # a later chunk still names its subject
                passages.append(
                    CorpusPassage(
                        id=f"{doc.id}#{c.index}",
                        doc_id=doc.id,
                        text=text,
                        title=doc.title,
                        metadata={"chunk": c.index, "n_chunks": len(chunks)},
                    )
                )
    return Corpus(kind=source, location=str(root), passages=passages, skipped_empty=skipped)


def default_chunk_tokens(settings: Settings, query_tokens: int = 32) -> int:
    """What fits in one reranker window next to a query (MiniLM word pieces)."""
    return passage_budget(settings.max_length, query_tokens)


def _from_chroma(settings: Settings, collection: str, docstore: Any) -> Corpus:
    if docstore is None:
        docstore = DocStore(settings)
    if collection not in docstore.list_collections():
        raise NotFoundError("collection", f"unknown collection {collection!r} (known: {docstore.list_collections()})")
    passages, skipped = [], 0
    # The collection's stored vectors are the prior's passage vectors when the same model made them
    # (checked by fingerprint): fine-tuning's frozen passage bank then embeds nothing again.
    from adaptrank.core.embeddings import model_fingerprint, passage_vectors

    same = docstore.embedding_fingerprint(collection) == model_fingerprint(settings.embedding_model)
    vectors = passage_vectors(settings.embedding_model) if same else None
    for rid, text, meta in docstore.iter_documents(collection, vectors=vectors):
        if not text or not text.strip():
            skipped += 1
            continue
        doc_id = str(meta.get("doc_id") or rid)
        passages.append(
            CorpusPassage(id=rid, doc_id=doc_id, text=text, title=str(meta.get("title") or ""), metadata=meta)
        )
    if not passages:
        raise InputError("collection", f"collection {collection!r} holds no documents")
    passages.sort(key=lambda p: (p.doc_id, int(p.metadata.get("chunk", 0) or 0), p.id))
    return Corpus(kind="chroma", location=collection, passages=passages, skipped_empty=skipped)


def sample_documents(corpus: Corpus, max_documents: int, seed: int = 0) -> list[str]:
    """Up to ``max_documents`` document ids, a seeded random sample in a stable order (the
    same call always picks the same documents, so a resumed job continues the same work)."""
    if max_documents < 1:
        raise InputError("max_documents", f"is {max_documents}; it must be at least 1")
    ids = sorted(corpus.doc_ids)
    if len(ids) <= max_documents:
        return ids
    return sorted(random.Random(seed).sample(ids, max_documents))
