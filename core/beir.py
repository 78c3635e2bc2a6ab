"""Read BEIR-format data: ``corpus.jsonl``, ``queries.jsonl``, ``qrels.tsv`` (or ``qrels/*.tsv``)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from adaptrank.core.chunking import with_title
from adaptrank.core.errors import InputError
from adaptrank.core.paths import Roots, inside_roots


@dataclass
class BeirData:
    corpus: dict[str, dict[str, str]]  # id -> {"title", "text"}
    queries: dict[str, str] = field(default_factory=dict)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)  # qid -> {doc id: grade}
    query_meta: dict[str, dict] = field(default_factory=dict)

    def doc_text(self, doc_id: str) -> str:
        d = self.corpus[doc_id]
        return with_title(d["text"], d.get("title"))


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputError(str(path), f"line {n} is not valid JSON: {exc.msg}") from None
    return rows


def load_corpus(path: Path, limit: int | None = None) -> dict[str, dict[str, str]]:
    """Documents by id. A repeated id (medquad-dev has 765, where two sub-collections collide)
    keeps every document: later copies become ``<id>#2``, ``<id>#3``; see :func:`load_beir`."""
    corpus: dict[str, dict[str, str]] = {}
    for row in read_jsonl(path):
        if "_id" not in row or "text" not in row:
            raise InputError(str(path), "each line needs '_id' and 'text'")
        doc_id, n = str(row["_id"]), 1
        while (doc_id if n == 1 else f"{doc_id}#{n}") in corpus:
            n += 1
        corpus[doc_id if n == 1 else f"{doc_id}#{n}"] = {"title": row.get("title") or "", "text": row["text"]}
        if limit and len(corpus) >= limit:
            break
    return corpus


def load_beir(folder: Path | str, corpus_limit: int | None = None, roots: Roots = None) -> BeirData:
    """``roots``: when given (MCP callers), each of the three files must resolve inside one of them."""
    folder = inside_roots(folder, roots) if roots is not None else Path(folder)
    corpus_path = folder / "corpus.jsonl"
    if not corpus_path.is_file():
        raise InputError("path", f"{folder} has no corpus.jsonl (BEIR layout expected)")
    data = BeirData(corpus=load_corpus(inside_roots(corpus_path, roots), corpus_limit))
    if (folder / "queries.jsonl").is_file():
        for row in read_jsonl(inside_roots(folder / "queries.jsonl", roots)):
            data.queries[str(row["_id"])] = row["text"]
            data.query_meta[str(row["_id"])] = row.get("metadata") or {}
    qrels_path = folder / "qrels.tsv"
    if not qrels_path.is_file() and (folder / "qrels" / "test.tsv").is_file():
        qrels_path = folder / "qrels" / "test.tsv"
    if qrels_path.is_file():
        with open(inside_roots(qrels_path, roots), encoding="utf-8") as f:
            for row in csv.reader(f, delimiter="\t"):
                if not row or row[0] == "query-id":
                    continue
                data.qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    # A judgement on a repeated id cannot say which copy it meant: it counts for every copy.
    copies: dict[str, list[str]] = {}
    for doc_id in data.corpus:
        copies.setdefault(doc_id.split("#", 1)[0], []).append(doc_id)
    for rels in data.qrels.values():
        for doc_id, grade in list(rels.items()):
            for copy in copies.get(doc_id, [])[1:]:
                rels.setdefault(copy, grade)
    return data
