"""Every file a reader opens for an MCP caller resolves inside an allowed root — not only the folder
the caller named. Regression for the probe's arbitrary file read: an allowed folder holding a *file*
symlink (``passwd.txt -> <outside>``) used to ingest the link's target, and ``search`` returned it."""

from __future__ import annotations

import json

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from adaptrank.core.beir import load_beir
from adaptrank.core.errors import InputError
from adaptrank.core.paths import allowed_roots, inside_roots
from adaptrank.core.settings import Settings
from adaptrank.core.sources import read_documents
from adaptrank.server.app import create_app
from adaptrank.server.context import Services
from adaptrank.training.corpus import load_corpus

SECRET = "root:x:0:0:the secret that must never be ingested"


@pytest.fixture
def layout(tmp_path):
    """``allowed/`` (the only root) and ``outside/secret.txt``; links are added per test."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "notes").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    (outside / "corpus.jsonl").write_text(json.dumps({"_id": "s", "title": "", "text": SECRET}) + "\n")
    (allowed / "notes" / "gout.md").write_text("# Gout\n\nGout is caused by uric acid crystals.")
    return allowed, outside


def _roots(allowed):
    return [allowed.resolve()]


def test_folder_with_a_file_symlink_is_refused_before_anything_is_read(layout):
    allowed, outside = layout
    (allowed / "notes" / "passwd.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(InputError, match=r"path: .*passwd\.txt.*outside the allowed roots"):
        list(read_documents(allowed / "notes", roots=_roots(allowed)))
    # the CLI's own user (no roots) may still follow their own links
    assert SECRET in {d.text for d in read_documents(allowed / "notes")}


def test_links_that_stay_inside_a_root_are_fine(layout):
    allowed, _ = layout
    (allowed / "notes" / "alias.md").symlink_to(allowed / "notes" / "gout.md")
    docs = list(read_documents(allowed / "notes", roots=_roots(allowed)))
    assert sorted(d.id for d in docs) == ["alias.md", "gout.md"]


@pytest.mark.parametrize("fmt", ["jsonl", "beir"])
def test_jsonl_and_beir_files_that_link_outside_are_refused(layout, fmt):
    allowed, outside = layout
    beir = allowed / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").symlink_to(outside / "corpus.jsonl")
    target = beir / "corpus.jsonl" if fmt == "jsonl" else beir
    with pytest.raises(InputError, match="outside the allowed roots"):
        list(read_documents(target, fmt, roots=_roots(allowed)))


def test_beir_queries_and_qrels_links_are_refused(layout):
    allowed, outside = layout
    beir = allowed / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text(json.dumps({"_id": "d", "text": "gout"}) + "\n")
    (outside / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": SECRET}) + "\n")
    (beir / "queries.jsonl").symlink_to(outside / "queries.jsonl")
    with pytest.raises(InputError, match=r"queries\.jsonl.*outside the allowed roots"):
        load_beir(beir, roots=_roots(allowed))
    (beir / "queries.jsonl").unlink()
    (outside / "qrels.tsv").write_text("q\td\t1\n")
    (beir / "qrels.tsv").symlink_to(outside / "qrels.tsv")
    with pytest.raises(InputError, match=r"qrels\.tsv.*outside the allowed roots"):
        load_beir(beir, roots=_roots(allowed))
    assert load_beir(beir).qrels == {"q": {"d": 1}}  # unrestricted callers are unchanged


def test_generation_corpus_sources_check_each_file(layout, tmp_path):
    allowed, outside = layout
    (allowed / "notes" / "passwd.txt").symlink_to(outside / "secret.txt")
    settings = Settings(home=tmp_path / "home", allowed_roots=[allowed])
    with pytest.raises(InputError, match="outside the allowed roots"):
        load_corpus(settings, "folder", path=str(allowed / "notes"), restrict_paths=True)


def test_nul_bytes_name_the_field():
    with pytest.raises(InputError, match="path: must not contain a NUL byte"):
        inside_roots("a\0b", None)


async def test_ingest_documents_tool_refuses_and_keeps_serving(layout, tmp_path, tiny_bi_encoder):
    allowed, outside = layout
    (allowed / "notes" / "passwd.txt").symlink_to(outside / "secret.txt")
    settings = Settings(
        home=tmp_path / "home",
        allowed_roots=[allowed],
        embedding_model=tiny_bi_encoder,
        default_model=f"bi-encoder:{tiny_bi_encoder}",
    )
    assert allowed.resolve() in allowed_roots(settings)
    services = Services(settings)
    try:
        async with Client(create_app(services=services)) as client:
            with pytest.raises(ToolError, match=r"path: .*passwd\.txt.*outside the allowed roots"):
                await client.call_tool("ingest_documents", {"path": str(allowed / "notes"), "collection": "notes"})
            (allowed / "notes" / "passwd.txt").unlink()
            await client.call_tool("ingest_documents", {"path": str(allowed / "notes"), "collection": "notes"})
            res = (
                await client.call_tool("search", {"question": "what causes gout", "collection": "notes"})
            ).structured_content
        texts = " ".join(r["text"] for r in res["results"])
        assert "uric acid" in texts and SECRET not in texts
    finally:
        services.close()
