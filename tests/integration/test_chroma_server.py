"""DocStore, ingest and the agent against a real ``chroma run`` server on 127.0.0.1 (started here)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from search_corpus import DOCS, Q

from adaptrank.agents.agent import AgentConfig, DecompositionAgent
from adaptrank.agents.retrieval import ChromaRetriever
from adaptrank.core.docstore import DocStore
from adaptrank.core.engine import Reranker
from adaptrank.core.errors import NotFoundError
from adaptrank.core.ingest import ingest
from adaptrank.core.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chroma_binary() -> str:
    exe = Path(sys.executable).parent / "chroma"
    return str(exe) if exe.is_file() else (shutil.which("chroma") or pytest.skip("the chroma CLI is not installed"))


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory):
    """A ``chroma run`` server on a free loopback port; waits for its heartbeat, killed at teardown."""
    port = free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log = open(data / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [chroma_binary(), "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"chroma run exited with {proc.returncode}: {(data / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("chroma run did not answer its heartbeat within 60 s")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture
def settings(tmp_path, chroma_url, minilm):
    return Settings(home=tmp_path / "home", chroma_url=chroma_url, embedding_model=minilm)


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    for name, text in DOCS.items():
        (root / name).write_text(text)
    return root


def test_docstore_over_http(settings):
    store = DocStore(settings)
    name = "srv-store"
    store.upsert(name, ["a", "b", "c"], list(DOCS.values()), [{"k": 1}, None, {"k": 3}], batch_size=2, progress=False)
    assert name in store.list_collections() and store.count(name) == 3
    hits = store.query(name, ["Which city is the capital of France?"], k=2)[0]
    assert hits[0].id == "c" and 0 < hits[0].score <= 1
    assert sorted(i for i, _, _ in store.iter_documents(name, batch_size=2)) == ["a", "b", "c"]
    assert not (settings.home / "chroma").exists()  # nothing embedded on disk: the server holds it

    # a plain HttpClient rebuilds our embedding function from the stored config (no download)
    import chromadb

    _host, port = settings.chroma_url.rsplit(":", 1)
    col = chromadb.HttpClient(host="127.0.0.1", port=int(port)).get_collection(name)
    assert col.configuration_json["embedding_function"]["name"] == "adaptrank_sentence_transformer"
    assert col.query(query_texts=["uric acid crystals"], n_results=1)["ids"] == [["a"]]

    store.delete_collection(name)
    with pytest.raises(NotFoundError):
        store.collection(name)


def test_ingest_is_idempotent_over_http(settings, corpus):
    store = DocStore(settings)
    first = ingest(store, corpus, "srv-notes", progress=False)
    assert (first.added, first.collection_count) == (3, 3)
    again = ingest(store, corpus, "srv-notes", progress=False)
    assert (again.unchanged, again.chunks_written, again.collection_count) == (3, 0, 3)
    (corpus / "paris.txt").write_text("Paris is the capital of France. " * 200)  # now several chunks
    changed = ingest(store, corpus, "srv-notes", chunk_tokens=64, overlap=8, progress=False)
    assert changed.updated == 3  # new chunk size: every document re-chunked
    assert store.count("srv-notes") == changed.collection_count > 3
    shorter = ingest(store, corpus, "srv-notes", progress=False)  # back to 200 tokens: stale chunks go
    assert shorter.chunks_deleted > 0 and store.count("srv-notes") == shorter.collection_count


def test_agent_over_http(settings, corpus, minilm):
    store = DocStore(settings)
    ingest(store, corpus, "srv-agent", progress=False)
    reranker = Reranker(f"bi-encoder:{minilm}", settings=settings)
    try:
        res = DecompositionAgent(reranker, None, AgentConfig(k=1)).run(Q, ChromaRetriever(store, "srv-agent"))
    finally:
        reranker.close()
    assert {p.metadata["doc_id"] for p in res.results} >= {"gout.md", "asthma.md"}
    sub_hits = {f.query: p.metadata["doc_id"] for p in res.results for f in p.found_by if f.query_index > 0}
    assert sub_hits == {"What causes gout?": "gout.md", "How is asthma treated?": "asthma.md"}
