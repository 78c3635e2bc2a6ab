"""Ingest: folders, JSONL and BEIR into a real embedded Chroma; idempotent re-ingest; allowed roots."""

from __future__ import annotations

import itertools
import json

import pytest

from adaptrank.core.errors import InputError
from adaptrank.core.ingest import ingest
from adaptrank.core.paths import check_allowed_path
from adaptrank.core.sources import read_documents

LONG = " ".join(f"Paragraph sentence {i} explains how gout flares are treated with colchicine." for i in range(30))


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "notes"
    (root / "sub").mkdir(parents=True)
    (root / "gout.md").write_text("# Gout\n\n" + LONG)
    (root / "sub" / "asthma.txt").write_text("Asthma is treated with inhaled corticosteroids.")
    (root / "skip.pdf").write_bytes(b"%PDF")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "secret.md").write_text("never read")
    return root


def by_doc(store, name):
    out: dict[str, list] = {}
    for cid, text, meta in store.iter_documents(name):
        out.setdefault(meta["doc_id"], []).append((meta["chunk"], cid, text, meta))
    return {k: sorted(v) for k, v in out.items()}


def test_folder_ingest_chunks_with_stable_ids_and_metadata(store, folder):
    rep = ingest(store, folder, "notes", chunk_tokens=40, overlap=8, progress=False)
    assert (rep.format, rep.documents, rep.added) == ("folder", 2, 2)
    docs = by_doc(store, "notes")
    assert set(docs) == {"gout.md", "sub/asthma.txt"}
    gout = docs["gout.md"]
    assert len(gout) > 3 and [c[1] for c in gout] == [f"gout.md#{i}" for i in range(len(gout))]
    source_text = (folder / "gout.md").read_text()
    for _, _, text, meta in gout:
        assert meta["title"] == "Gout" and meta["n_chunks"] == len(gout)
        assert meta["source"] == str((folder / "gout.md").resolve())
        body = source_text[meta["char_start"] : meta["char_end"]]
        # the title is prefixed unless the chunk names it near its start
        assert text == (body if "gout" in body[:124].lower() else "Gout. " + body)
    assert gout[0][2].startswith("# Gout")
    assert docs["sub/asthma.txt"][0][3]["title"] == "asthma"
    assert rep.collection_count == store.count("notes") == sum(len(v) for v in docs.values())


def test_reingest_updates_instead_of_duplicating(store, folder):
    first = ingest(store, folder, "notes", chunk_tokens=40, overlap=8, progress=False)
    again = ingest(store, folder, "notes", chunk_tokens=40, overlap=8, progress=False)
    assert (again.unchanged, again.added, again.updated, again.chunks_written) == (2, 0, 0, 0)
    assert store.count("notes") == first.collection_count

    # a shorter gout.md: re-chunked, and its stale chunks removed
    (folder / "gout.md").write_text("# Gout\n\nGout is now a short note about uric acid.")
    changed = ingest(store, folder, "notes", chunk_tokens=40, overlap=8, progress=False)
    assert (changed.updated, changed.unchanged, changed.chunks_written) == (1, 1, 1)
    assert changed.chunks_deleted == first.collection_count - 2
    docs = by_doc(store, "notes")
    assert [c[1] for c in docs["gout.md"]] == ["gout.md#0"] and "uric acid" in docs["gout.md"][0][2]
    assert store.count("notes") == 2

    # a deleted file stays unless prune=True
    (folder / "sub" / "asthma.txt").unlink()
    kept = ingest(store, folder, "notes", chunk_tokens=40, overlap=8, progress=False)
    assert kept.pruned == 0 and store.count("notes") == 2
    pruned = ingest(store, folder, "notes", chunk_tokens=40, overlap=8, prune=True, progress=False)
    assert pruned.pruned == 1 and set(by_doc(store, "notes")) == {"gout.md"}


def test_jsonl_with_configurable_fields(store, tmp_path):
    path = tmp_path / "docs.jsonl"
    rows = [
        {
            "key": "a",
            "body": "Colchicine helps during flares.",
            "heading": "Gout",
            "meta": {"lang": "en"},
            "year": 2020,
        },
        {"key": "b", "body": "Inhalers treat asthma.", "meta": {"lang": "en"}},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    rep = ingest(
        store,
        path,
        "j-docs",
        id_field="key",
        text_field="body",
        title_field="heading",
        metadata_field="meta",
        progress=False,
    )
    assert (rep.format, rep.documents) == ("jsonl", 2)
    docs = by_doc(store, "j-docs")
    a = docs["a"][0]
    assert a[1] == "a#0" and a[2] == "Gout. Colchicine helps during flares."
    assert a[3]["lang"] == "en" and a[3]["year"] == 2020 and a[3]["title"] == "Gout"
    assert docs["b"][0][2] == "Inhalers treat asthma."  # no title, no prefix


def test_beir_keeps_titles(store, tmp_path):
    folder = tmp_path / "beir"
    folder.mkdir()
    rows = [
        {"_id": "d1", "title": "Gout", "text": "Gout is caused by uric acid."},
        {"_id": "d1", "title": "Gout", "text": "A repeated id keeps both copies."},
        {"_id": "d2", "title": "Asthma", "text": "Inhalers help."},
    ]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    rep = ingest(store, folder, "beir", progress=False)
    assert (rep.format, rep.documents) == ("beir", 3)
    docs = by_doc(store, "beir")
    assert set(docs) == {"d1", "d1#2", "d2"}
    assert docs["d2"][0][2] == "Asthma. Inhalers help."  # title prefixed
    assert docs["d1"][0][2] == "Gout is caused by uric acid."  # the chunk names its title already


def test_bad_sources_are_clear_errors(store, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "ok"}\n{"text": "no id"}\n')
    with pytest.raises(InputError, match="line 2 has no 'id'"):
        ingest(store, bad, "bad-docs", progress=False)
    bad.write_text('{"id": "a", "text": "ok"}\n{"id": "a", "text": "again"}\n')
    with pytest.raises(InputError, match="repeats id 'a'"):
        list(read_documents(bad))
    bad.write_text("not json\n")
    with pytest.raises(InputError, match="line 1 is not valid JSON"):
        list(read_documents(bad))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .txt/.md files"):
        list(read_documents(tmp_path / "empty"))
    with pytest.raises(InputError, match="does not exist"):
        list(read_documents(tmp_path / "missing"))


def test_allowed_roots(settings, tmp_path, folder):
    with pytest.raises(InputError, match="outside the allowed roots.*ADAPTRANK_ALLOWED_ROOTS"):
        check_allowed_path(settings, folder)
    settings.allowed_roots = [tmp_path]
    assert check_allowed_path(settings, folder) == folder.resolve()
    with pytest.raises(InputError, match="outside"):
        check_allowed_path(settings, folder / ".." / ".." / "..")
    link = tmp_path / "link"
    link.symlink_to("/etc")
    with pytest.raises(InputError, match="outside"):
        check_allowed_path(settings, link)
    settings.home.mkdir(parents=True, exist_ok=True)
    assert check_allowed_path(settings, settings.home) == settings.home.resolve()


# -- issue 13: data hygiene ------------------------------------------------------------------------
def test_untitled_documents_get_no_dangling_separator(store, tmp_path):
    path = tmp_path / "untitled.jsonl"
    rows = [
        {"id": "blank", "title": "   ", "text": "Inhalers treat asthma."},
        {"id": "empty", "title": "", "text": LONG},
        {"id": "question", "title": "What treats gout?", "text": "Colchicine helps during flares."},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    ingest(store, path, "untitled", chunk_tokens=40, overlap=8, progress=False)
    docs = by_doc(store, "untitled")
    assert docs["blank"][0][2] == "Inhalers treat asthma."
    assert docs["question"][0][2] == "What treats gout? Colchicine helps during flares."
    assert len(docs["empty"]) > 3
    for _, _, text, meta in docs["empty"]:
        assert text == LONG[meta["char_start"] : meta["char_end"]]  # the chunk alone, nothing prefixed
    for chunks in docs.values():
        for _, _, text, _ in chunks:
            assert text[0].isalnum(), text[:40]  # no ". ", no whitespace, no stray separator


def test_ingested_chunks_start_at_sentence_starts_and_cover_the_document(store, tmp_path):
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"id": "long", "text": LONG}))
    ingest(store, path, "long", chunk_tokens=40, overlap=20, progress=False)  # sentences: 16 tokens
    chunks = [c[3] for c in by_doc(store, "long")["long"]]
    assert len(chunks) > 3 and chunks[0]["char_start"] == 0 and chunks[-1]["char_end"] == len(LONG)
    for a, b in itertools.pairwise(chunks):
        assert b["char_start"] < a["char_end"]  # still overlapping: nothing lost between chunks
        assert LONG[b["char_start"] :].startswith("Paragraph sentence "), LONG[b["char_start"] :][:40]


def test_a_chunking_change_re_chunks_on_the_next_ingest(store, folder, monkeypatch):
    """Unchanged-detection hashes the source document plus INGEST_VERSION (not the chunks), so a
    change to chunk boundaries must bump the version for re-ingest to replace old chunks."""
    import adaptrank.core.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "INGEST_VERSION", "old")
    first = ingest(store, folder, "notes", chunk_tokens=40, overlap=8, progress=False)
    monkeypatch.undo()
    again = ingest(store, folder, "notes", chunk_tokens=40, overlap=8, progress=False)
    assert (again.updated, again.unchanged, again.added) == (2, 0, 0)
    assert store.count("notes") == again.chunks_written == again.collection_count
    assert again.chunks_deleted == max(0, first.collection_count - again.collection_count)


def test_training_corpus_and_beir_text_skip_blank_titles(settings, tmp_path):
    from adaptrank.core.beir import BeirData
    from adaptrank.training.corpus import load_corpus

    rows = [
        {"_id": "blank", "title": "  ", "text": "Inhalers treat asthma."},
        {"_id": "gout", "title": "Gout", "text": "Colchicine helps during flares."},
    ]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    corpus = load_corpus(settings, "beir", path=str(tmp_path), restrict_paths=False)
    assert sorted(p.text for p in corpus.passages) == [
        "Gout. Colchicine helps during flares.",
        "Inhalers treat asthma.",
    ]
    data = BeirData(corpus={r["_id"]: {"title": r["title"], "text": r["text"]} for r in rows})
    assert data.doc_text("blank") == "Inhalers treat asthma."
    assert data.doc_text("gout") == "Gout. Colchicine helps during flares."
